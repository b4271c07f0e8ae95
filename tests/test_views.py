"""Views read results only: the README, the results pages and every benchmark's tables render
with torch, timm, ONNX Runtime and OpenVINO unimportable and without executing a benchmark
script, and every script shows its records through the view registered under its name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segbench.bench import load_script
from segbench.results import load
from segbench.views.registry import VIEWS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "onnxruntime", "openvino")
SCRIPTS = sorted((ROOT / "benchmarks").glob("*/benchmark.py"))

# sys.modules[name] = None makes ``import name`` raise, as if it were not installed; the
# scripts' own modules are named benchmark_<dir> by bench.load_script
BLOCKED = f"""\
import runpy, sys
for name in {HEAVY!r}:
    sys.modules[name] = None
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    loaded = [m for m in sys.modules if m.split(".")[0] in {HEAVY!r} and sys.modules[m]]
    loaded += [m for m in sys.modules if m.startswith("benchmark_") or m == "segbench.bench"]
    print("LOADED", sorted(loaded), file=sys.stderr)
"""


def test_report_check_runs_without_torch_timm_onnxruntime_openvino(tmp_path):
    """``report.py --check`` on the committed README and results, the heavy libraries blocked:
    it must get as far as comparing (0 = up to date, 1 = stale), never fail on an import."""
    proc = subprocess.run([sys.executable, "-c", BLOCKED, str(ROOT / "benchmarks" / "report.py"),
                           "--check"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
    assert "LOADED []" in proc.stderr, proc.stderr


def test_views_import_without_heavy_libraries():
    code = (f"import sys\nfor n in {HEAVY!r}: sys.modules[n] = None\n"
            "import segbench.readme, segbench.summary, segbench.plots, segbench.flat\n"
            "from segbench.views.registry import VIEWS\n"
            "from segbench.views import scaling, simple\n"
            "from segbench.benchmarks.whole_ct import view\n"
            "print(len(VIEWS))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name)
def test_every_script_shows_its_records_through_its_registered_view(script):
    name = script.parent.name
    assert name in VIEWS, f"{name} has no view in segbench/views/registry.py"
    bench = load_script(script)
    view = VIEWS[name]
    assert bench.name == view.name == name
    if bench.view is not view:  # a script not moved to the registry yet: the same facts
        assert (bench.title, bench.tradeoff, bench.trained, bench.plots) == (
            view.title, view.tradeoff, view.trained, view.plots)
        for path in sorted((ROOT / "results" / name).glob("*.json")):
            results = load(path, name)
            assert bench.render(results) == view.render(results)


def test_trained_through_matches_the_model_families():
    from segbench import readme
    from segbench.models import FAMILY_MODULES, family

    declared = {name: family(name).trained_through for name in FAMILY_MODULES
                if getattr(family(name), "trained_through", None)}
    assert readme.TRAINED_THROUGH == declared
