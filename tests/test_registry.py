"""A runtime is one module plus one registry line: it then appears in --list, runs cells, and
reaches tables and recommendations through its declared precision. Options are typed."""

import sys
import textwrap

import pytest

from segbench import bench, runtimes, summary
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.results import ResultsFile, save

FAKE = textwrap.dedent('''
    """A fake FP32 runtime: eager under another name, for the registry test."""
    from segbench.runtimes.pytorch import RUNTIMES as TORCH


    class Fake:
        name = "fake-fp32"
        precision = "fp32"

        def unavailable_reason(self):
            return None

        def prepare(self, model, example, threads, scale: float = 1.0):
            prepared = TORCH["eager"].prepare(model, example, threads)
            prepared.info["scale"] = scale
            return prepared


    RUNTIMES = {"fake-fp32": Fake()}
''')


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    (tmp_path / "fake_rt.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(runtimes.RUNTIME_MODULES, "fake-fp32", "fake_rt")
    yield "fake-fp32"
    sys.modules.pop("fake_rt", None)


def test_a_new_runtime_is_listed_runs_and_reaches_the_recommendations(fake_runtime, capsys,
                                                                       encoder_bench, tmp_path):
    from segbench.worker import run_cell

    assert bench.main(encoder_bench, ["--list"]) == 0
    assert "fake-fp32" in capsys.readouterr().out
    cells = [Cell(benchmark="quantization", model=ModelSpec("testing", "tiny", 2),
                  runtime=rt, shape=(1, 3, 32, 32), threads=1, protocol=Protocol.smoke())
             for rt in ("eager", fake_runtime)]
    records = [run_cell(cell) for cell in cells]
    assert [r.status for r in records] == ["ok", "ok"]
    assert records[1].precision == "fp32"  # from the runtime object, not its name
    records[1].timing["throughput"] = 10 * records[0].timing["throughput"]
    machine = {"slug": "fake-2c", "cpu": "Fake CPU", "physical_cores": 2, "memory_gib": 8}
    save(tmp_path / "quantization" / "fake-2c.json",
         ResultsFile("quantization", machine, records))
    text = summary.render(tmp_path)
    row = next(ln for ln in text.splitlines() if ln.startswith("| ") and "img/s" not in ln
               and "---" not in ln)
    assert row.split("|")[2].strip() == "`fake-fp32`"  # the fastest runtime column


def test_options_are_declared_and_checked():
    assert runtimes.option_names("ort-int8") == ["exporter", "calibration",
                                                 "calibration_inputs", "activation",
                                                 "onnx_file"]
    with pytest.raises(ValueError, match="runtime 'ort-int8' has no option 'calibraton'; "
                                         "it takes: exporter, calibration"):
        runtimes.check_options("ort-int8", {"calibraton": 8})
    assert runtimes.accepted("eager", {"calibration_inputs": [1], "channels_last": False}) == \
        {"channels_last": False}
    with pytest.raises(TypeError):  # no catch-all: a direct call with a typo fails too
        runtimes.get("eager").prepare(None, None, 1, chanels_last=False)


def test_a_misspelt_runtime_option_is_a_usage_error_before_any_work(encoder_bench, capsys,
                                                                     tmp_path, monkeypatch):
    def cells(b, opts):
        out = b.default_cells(opts)
        out[0].runtime_options = {"calibraton": 8}
        return out
    monkeypatch.setattr(encoder_bench, "cells", cells)
    code = bench.main(encoder_bench, ["--out", str(tmp_path), "--models", "resnet18",
                                      "--runtimes", "ort-int8"])
    err = capsys.readouterr().err
    assert code == 2 and "has no option 'calibraton'" in err and err.count("\n") == 1
    assert not (tmp_path / "encoder_only").exists()


def test_the_registry_table_says_what_each_runtime_object_says():
    """The torch-free table (precision, toolchain) that benchmark lists and reports read cannot
    drift from the runtime objects: each line's precision is the object's own."""
    assert list(runtimes.RUNTIME_MODULES) == list(runtimes.REGISTRY)
    for name, entry in runtimes.REGISTRY.items():
        runtime = runtimes.get(name)
        assert runtime.name == name
        assert runtime.precision == entry.precision == runtimes.precision_of(name)
        assert entry.precision in ("fp32", "bf16", "int8")
        assert runtimes.toolchain_of(name) in ("eager", "compile", "ort", "openvino")
    assert runtimes.precision_of(runtimes.REFERENCE) == "fp32"


def test_a_new_registry_line_reaches_the_runtime_lists(monkeypatch):
    """Adding a runtime touches its module and its registry line; the champion, fidelity and
    quantization lists follow from the registry (fidelity: lower precisions; quantization:
    every toolchain but torch.compile's)."""
    from pathlib import Path

    from segbench import champion

    assert champion.RUNTIMES == tuple(runtimes.REGISTRY)
    assert all(champion.PROBE_RUNTIMES[rt] == runtimes.precision_of(rt)
               for rt in champion.PROBE_RUNTIMES)
    monkeypatch.setitem(runtimes.REGISTRY, "newrt-int8", runtimes.Entry("newrt", "newrt", "int8"))
    monkeypatch.setitem(runtimes.RUNTIME_MODULES, "newrt-int8", "segbench.runtimes.newrt")
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    fidelity = bench.load_script(root / "fidelity" / "benchmark.py").runtimes
    quantization = bench.load_script(root / "quantization" / "benchmark.py").runtimes
    assert fidelity[-1] == quantization[-1] == "newrt-int8"
    assert fidelity[0] == quantization[0] == runtimes.REFERENCE
    assert "compile-int8" in fidelity and "compile-int8" not in quantization


def test_the_3d_runtime_lists_derive_from_the_registry_unchanged(monkeypatch):
    """whole_ct's --fast runtimes and champion_3d's runtimes and probes come from the registry
    (a benchmark states only an order and what it leaves out); the derived lists are the ones
    the committed runs used, in their order."""
    from segbench import catalogue
    from segbench.benchmarks.champion_3d import plan

    assert catalogue.FAST_RUNTIMES == ("eager", "openvino-bf16", "compile-bf16", "openvino-int8",
                                       "ort-fp32", "openvino-fp32")
    assert plan.RUNTIMES == catalogue.FAST_RUNTIMES + ("ort-int8", "compile-int8")
    assert plan.PROBE_RUNTIMES == ("openvino-fp32", "openvino-bf16", "openvino-int8", "compile",
                                   "compile-bf16")
    fast = next(m for m in catalogue.METHODS if m.key == "totalseg-fast")
    assert set(fast.runtimes) | set(fast.not_run) == set(runtimes.REGISTRY)
    monkeypatch.setitem(runtimes.REGISTRY, "newrt-int8", runtimes.Entry("newrt", "newrt", "int8"))
    assert runtimes.ordered(catalogue.FAST_RUN_ORDER, catalogue.FAST_NOT_RUN)[-1] == "newrt-int8"


def test_a_misspelt_runtime_in_a_list_fails():
    with pytest.raises(ValueError, match="unknown runtime.*'openvino-bf61'"):
        runtimes.ordered(("eager", "openvino-bf61"))
    assert runtimes.ordered(("ort-fp32", "eager"), leave_out=("eager",))[:2] == (
        "ort-fp32", "compile")
