"""Failure isolation: a model that raises, hangs or crashes becomes a row; the run goes on."""

import json

from segbench import bench, cli
from segbench.cell import Cell
from segbench.isolate import run_isolated
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.results import load


def cell(name: str, runtime: str = "eager") -> Cell:
    return Cell(benchmark="t", model=ModelSpec("testing", name, classes=2), runtime=runtime,
                shape=(1, 3, 32, 32), threads=1, protocol=Protocol.smoke(repeats=1))


def test_working_cell_gives_a_full_record():
    r = run_isolated(cell("tiny"), timeout=120)
    assert r.status == "ok", r.reason
    assert r.timing["throughput"] > 0 and r.timing["calls"] >= 2
    assert r.params > 0 and r.gflops > 0
    assert r.memory["forward_peak_bytes"] > 0 and r.memory["peak_rss_mb"] > 0
    assert r.quick and r.protocol["repeats"] == 1


def test_raise_hang_and_crash_become_rows_and_the_run_completes(tmp_path):
    b = bench.Benchmark(name="isolation", title="t", families=["testing"],
                        models=["raise", "hang", "crash", "tiny"], quick_models=["tiny"])
    opts = cli.Options(models=["raise", "hang", "crash", "tiny"], runtimes=["eager"], size=32,
                       batch=1, threads=1, classes=2, repeats=1, quick=True, out=tmp_path,
                       timeout=15, list=False, isolate=True)
    path = tmp_path / "isolation" / "x.quick.json"
    from segbench.results import ResultsFile
    records = bench.run(b, opts, ResultsFile("isolation", {}), path)
    by_model = {r.model: r for r in records}
    assert by_model["raise"].status == "failed"
    assert "this model always fails" in by_model["raise"].reason
    assert by_model["raise"].reason.startswith("reference:")  # the stage is named
    assert by_model["hang"].status == "timeout" and "15 s" in by_model["hang"].reason
    assert by_model["crash"].status == "failed" and "code 139" in by_model["crash"].reason
    assert by_model["tiny"].status == "ok"
    # every cell was saved as it finished
    assert [r.model for r in load(path).records] == ["raise", "hang", "crash", "tiny"]
    assert "\n" not in "".join(r.reason for r in records)


def test_unavailable_runtime_is_a_skipped_row(monkeypatch):
    from segbench import machine
    from segbench.runtimes import pytorch
    from segbench.worker import run_cell

    monkeypatch.setattr(machine, "has_bf16", lambda: False)
    r = run_cell(cell("tiny", runtime="compile-bf16"))
    assert r.status == "skipped" and "avx512_bf16" in r.reason
    assert pytorch.RUNTIMES["compile-bf16"].precision == "bf16"


def test_memory_guard_skips_a_cell_that_would_not_fit(monkeypatch):
    """The estimate comes from the meta device, so nothing is allocated to decide."""
    from segbench import machine
    from segbench.worker import run_cell

    monkeypatch.setattr(machine, "available_memory_bytes", lambda: 64 * 2**20)  # 64 MiB free
    big = Cell(benchmark="t", model=ModelSpec("3d", "stunet-s", 105), runtime="eager",
               shape=(1, 1, 128, 128, 128), threads=1, protocol=Protocol.smoke(repeats=1))
    r = run_cell(big)
    assert r.status == "skipped"
    assert "GiB" in r.reason and "available" in r.reason
    assert r.memory["forward_peak_bytes"] > 64 * 2**20
    assert r.timing is None


def test_a_sigkilled_cell_reads_as_likely_out_of_memory(monkeypatch):
    """The worker writes its meta-device estimate before allocating; when the kernel's OOM
    killer (here: the model itself) sends SIGKILL, the reason quotes it."""
    monkeypatch.setenv("SEGBENCH_MEMORY_BUDGET", "3G")  # passed on to the worker
    r = run_isolated(cell("sigkill"), timeout=120)
    assert r.status == "failed"
    assert r.reason.startswith("killed (likely out of memory: estimate ")
    assert "available 3.0 GiB)" in r.reason
    assert "signal" not in r.reason


def test_killed_reason_without_an_estimate(tmp_path):
    from segbench.isolate import killed_reason

    assert "likely out of memory" in killed_reason(tmp_path / "missing.json")
    (tmp_path / "e.json").write_text(json.dumps({"estimate_bytes": 3 * 2**30,
                                                 "available_bytes": 0}))
    assert killed_reason(tmp_path / "e.json") == (
        "killed (likely out of memory: estimate 3.0 GiB, available unknown)")


def test_quick_runs_cells_in_process_and_isolate_brings_the_worker_back(tmp_path, monkeypatch):
    """--quick saves a fresh process's imports per cell; a raising cell is still a row, the
    temporary directory and thread count are restored; --isolate restores the worker."""
    import os
    import tempfile

    import torch

    from segbench import isolate
    from segbench.results import ResultsFile

    b = bench.Benchmark(name="inproc", title="t", families=["testing"],
                        models=["raise", "tiny"], quick_models=["raise", "tiny"])
    opts = b.parse(["--quick", "--threads", "1", "--size", "32", "--out", str(tmp_path),
                    "--retry-contended", "0"])
    assert not opts.isolated
    monkeypatch.setattr(bench, "run_isolated", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("a worker process was started")))
    before_tmp, before_threads = tempfile.tempdir, torch.get_num_threads()
    env_before = {k: os.environ.get(k) for k in isolate.IN_PROCESS_ENV}
    records = bench.run(b, opts, ResultsFile("inproc", {}), tmp_path / "x.quick.json")
    by_model = {r.model: r for r in records}
    assert by_model["raise"].status == "failed" and "always fails" in by_model["raise"].reason
    assert by_model["tiny"].status == "ok" and by_model["tiny"].elapsed_s > 0
    assert tempfile.tempdir == before_tmp and torch.get_num_threads() == before_threads
    assert {k: os.environ.get(k) for k in isolate.IN_PROCESS_ENV} == env_before
    assert b.parse(["--quick", "--isolate"]).isolated and b.parse([]).isolated
    seen = []
    monkeypatch.setattr(bench, "run_isolated", lambda cell, timeout: seen.append(cell) or
                        isolate.run_here(cell))
    bench.run(b, b.parse(["--quick", "--isolate", "--models", "tiny", "--threads", "1",
                          "--size", "32", "--out", str(tmp_path), "--retry-contended", "0"]),
              ResultsFile("inproc", {}), tmp_path / "y.quick.json")
    assert len(seen) == 1
