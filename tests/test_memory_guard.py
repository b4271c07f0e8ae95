"""Memory as a reason: every cell's footprint is estimated on the meta device before anything
is allocated, and a cell that cannot fit becomes a skipped row saying why.

The budget comes from SEGBENCH_MEMORY_BUDGET, so these tests do not depend on this machine.
"""

import resource

import pytest

from segbench import footprint
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.worker import estimate_memory, run_cell


def cell_2d(batch: int, size: int, **kw) -> Cell:
    return Cell(benchmark="t", model=ModelSpec("fpn", "mobilenetv4_conv_small", 117),
                runtime="eager", shape=(batch, 3, size, size), threads=1,
                protocol=Protocol.smoke(repeats=1), **kw)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_2d_guard_skips_batch_64_size_2048_on_64_mib_without_allocating(monkeypatch):
    monkeypatch.setenv(footprint.BUDGET_ENV, "64M")
    before = peak_rss_bytes()
    r = run_cell(cell_2d(64, 2048))  # the input alone would be 3 GiB, activations ~100 GiB
    assert r.status == "skipped"
    assert r.reason.startswith("does not fit: estimate ")
    assert "GiB" in r.reason and "available 0.06 GiB" in r.reason
    assert r.timing is None and r.params is None
    assert r.memory["forward_peak_bytes"] > 64 * 2**30  # batch and size are in the estimate
    assert r.memory["available_bytes"] == 64 * 2**20
    assert peak_rss_bytes() - before < 2**30  # nothing of that size was allocated


def test_estimate_grows_with_batch_and_size():
    small = estimate_memory(cell_2d(1, 256))["forward_peak_bytes"]
    assert estimate_memory(cell_2d(4, 256))["forward_peak_bytes"] > 3 * small
    assert estimate_memory(cell_2d(1, 512))["forward_peak_bytes"] > 3 * small


def test_trained_cells_are_estimated_without_training():
    """The estimate builds the structure only: a training recipe is not run on meta."""
    spec = ModelSpec("fpn", "mobilenetv4_conv_small", 4, options={"train": {"steps": 10**6}})
    c = Cell(benchmark="t", model=spec, runtime="eager", shape=(1, 3, 128, 128), threads=1)
    assert estimate_memory(c)["forward_peak_bytes"] > 0


def test_sliding_window_scenario_adds_its_accumulators():
    scenario = {"kind": "sliding_window", "volume": [1, 140, 133, 133],
                "patch": [112, 112, 128], "step": 0.8, "mirror": False}
    c = Cell(benchmark="t", model=ModelSpec("3d", "totalseg-3mm", 118), runtime="eager",
             shape=(1, 1, 112, 112, 128), threads=1, scenario=scenario)
    est = estimate_memory(c)
    # float32 input volume + float16 logits (118) and weights (1) over the padded grid
    assert est["scenario_bytes"] == 140 * 133 * 133 * (4 + 119 * 2)


def test_a_small_cell_fits_and_runs(monkeypatch):
    monkeypatch.setenv(footprint.BUDGET_ENV, "8G")
    c = Cell(benchmark="t", model=ModelSpec("testing", "tiny", 2), runtime="eager",
             shape=(1, 3, 32, 32), threads=1, protocol=Protocol.smoke(repeats=1))
    r = run_cell(c)
    assert r.status == "ok", r.reason
    assert r.memory["available_bytes"] == 8 * 2**30
    assert 0 < r.memory["estimate_bytes"] < 2**30


def test_a_bad_budget_is_a_failed_row(monkeypatch):
    monkeypatch.setenv(footprint.BUDGET_ENV, "lots")
    c = Cell(benchmark="t", model=ModelSpec("testing", "tiny", 2), runtime="eager",
             shape=(1, 3, 32, 32), threads=1)
    r = run_cell(c)
    assert r.status == "failed" and "memory budget" in r.reason


@pytest.mark.parametrize("text, size", [("123", 123), ("64M", 64 * 2**20), ("64MiB", 64 * 2**20),
                                        ("2G", 2 * 2**30), ("1.5GB", 3 * 2**29)])
def test_parse_size(text, size):
    assert footprint.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "G"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ValueError):
        footprint.parse_size(text)


def test_parallel_streams_multiply_the_estimate():
    from segbench.worker import memory_needed

    one = estimate_memory(cell_2d(1, 256))
    four = estimate_memory(cell_2d(1, 256, extra={"streams": 4}))
    assert memory_needed(four) == 4 * memory_needed(one)
