from pathlib import Path

import pytest

from segbench.bench import load_script

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    return load_script(ROOT / "benchmarks" / name / "benchmark.py")


@pytest.fixture
def encoder_bench():
    return load_benchmark("encoder_only")
