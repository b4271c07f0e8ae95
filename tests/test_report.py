"""Tables render from records; README sections regenerate; --check catches hand edits; plots
and comparisons draw from small fixtures."""

import importlib.util

import pytest
from conftest import ROOT

from segbench import plots, tables
from segbench.results import Record, ResultsFile, save


def rec(model="resnet18", runtime="eager", tp=10.0, status="ok", family="fpn", params=2_000_000,
        gflops=3.0, reps=None, key=None, **kw):
    timing = None
    if status == "ok":
        reps = reps or [tp * 0.98, tp, tp * 1.02]
        timing = {"throughput": tp, "throughput_iqr": 0.2, "repeat_throughputs": reps,
                  "latency_p50_ms": 1000 / tp, "latency_p99_ms": 1100 / tp, "first_call_s": 1.0,
                  "noisy": False}
    return Record(benchmark="encoder_only", key=key or f"{family}|{model}|{runtime}",
                  model=model, runtime=runtime, shape=[1, 3, 512, 512], batch=1, threads=2,
                  family=family, status=status, params=params, gflops=gflops, timing=timing,
                  prepare_s=0.5, date="2026-11-23T00:00:00+00:00", commit="abc", **kw)


MACHINE = {"slug": "fake-2c", "cpu": "Fake CPU", "physical_cores": 2, "memory_gib": 8,
           "isa": {"avx512_bf16": True}, "packages": {"torch": "x"}}


def test_failed_rows_show_their_reason_and_no_numbers():
    table = tables.render_table([rec(), rec("m2", status="failed", reason="prepare: boom")],
                                [tables.MODEL, tables.THROUGHPUT, tables.STATUS],
                                tables.ok_first(tables.throughput))
    lines = table.splitlines()
    assert "10.0 ± 0.2" in lines[2] and "ok" in lines[2]
    assert "failed: prepare: boom" in lines[3] and tables.DASH in lines[3]


def test_runtime_table_marks_best_and_speedup():
    rows = [rec(runtime="eager", tp=10.0), rec(runtime="ort-int8", tp=25.0,
                                                fidelity={"max_abs": 0.5, "sqnr_db": 20.0,
                                                          "label_agreement": 97.0,
                                                          "mean_dice": 0.9},
                                                runtime_info={"quantization": {
                                                    "stayed_float": {"Resize": 4}}},
                                                extra={"precision": "int8"})]
    table = tables.runtime_table(rows)
    int8 = next(line for line in table.splitlines() if "ort-int8" in line)
    assert "**best**" in int8 and "2.50" in int8 and "Resize x4" in int8
    assert "random-weight agreement < 99 %" in int8  # below the threshold: marked, not hidden
    # with the trained network's Dice drop known, that decides the flag instead
    model = rows[1].model
    keeps = tables.runtime_table(rows, trained={(model, "ort-int8"): -0.004})
    line = next(ln for ln in keeps.splitlines() if "ort-int8" in ln)
    assert "agreement <" not in line and "trained Dice" not in line and "-0.004" in line
    loses = tables.runtime_table(rows, trained={(model, "ort-int8"): -0.023})
    line = next(ln for ln in loses.splitlines() if "ort-int8" in ln)
    assert "trained Dice -0.023 vs FP32" in line and "agreement <" not in line


@pytest.fixture
def report_main():
    spec = importlib.util.spec_from_file_location("report_cmd", ROOT / "benchmarks/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_readme_regenerates_and_check_catches_a_hand_edit(tmp_path, report_main, capsys):
    results = tmp_path / "results"
    save(results / "encoder_only" / "fake-2c.json", ResultsFile("encoder_only", MACHINE, [
        rec("resnet18", family="encoder", tp=33.3),
        rec("mobileone_s0", family="encoder", tp=90.0)]))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:encoder_only -->\nold\n<!-- /results:encoder_only -->\n")
    args = ["--readme", str(readme), "--results", str(results)]
    assert report_main(args + ["--check"]) == 1  # stale before regeneration
    assert report_main(args) == 0
    text = readme.read_text()
    assert "33.3 ± 0.2" in text and "Fake CPU" in text and "old" not in text
    assert report_main(args + ["--check"]) == 0
    readme.write_text(text.replace("33.3 ± 0.2", "43.3 ± 0.2"))  # a hand-edited number
    assert report_main(args + ["--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_quick_files_never_reach_the_readme(tmp_path):
    results = tmp_path / "results"
    save(results / "encoder_only" / "fake-2c.quick.json",
         ResultsFile("encoder_only", MACHINE, [rec(quick=True)]))
    from segbench.results import full_results_files

    assert full_results_files(results, "encoder_only") == []


def test_pareto_front():
    points = [(1.0, 10.0), (2.0, 8.0), (3.0, 20.0), (4.0, 15.0), (0.5, 2.0)]
    assert plots.pareto_front(points) == [4, 0, 2]


def test_plots_render_from_a_fixture(tmp_path):
    records = [rec("a", tp=50.0, params=2e6, gflops=2.0), rec("b", tp=30.0, params=12e6,
                                                               gflops=9.0),
               rec("a", runtime="ort-fp32", tp=70.0, params=2e6, gflops=2.0, key="k3")]
    for x in ("params", "gflops"):
        path = plots.tradeoff_plot(records, x, tmp_path / f"{x}.png")
        assert path.stat().st_size > 1000
    assert plots.tradeoff_plot([], "params", tmp_path / "none.png") is None
    small = rec("c", tp=900.0, key="k4")
    small.shape = [1, 3, 128, 128]  # another input size is never drawn with 512x512 rows
    assert plots.tradeoff_plot([small], "params", tmp_path / "small.png") is None
    bars = plots.ct_seconds_plot([("2D", 30.0), ("3D", 600.0)], tmp_path / "ct.png", "t")
    assert bars.read_bytes()[:4] == b"\x89PNG"


def test_compare_marks_overlapping_spreads_not_significant():
    a = ResultsFile("encoder_only", {"slug": "a"}, [rec(tp=10.0, reps=[9.0, 10.0, 11.0]),
                                                     rec("m2", tp=10.0, reps=[9.9, 10.0, 10.1])])
    b = ResultsFile("encoder_only", {"slug": "b"}, [rec(tp=10.5, reps=[9.5, 10.5, 11.5]),
                                                     rec("m2", tp=20.0, reps=[19.9, 20.0, 20.1])])
    lines = tables.compare_table(a, b).splitlines()
    assert "no (IQRs overlap)" in lines[2] and "1.05" in lines[2]
    assert "yes" in lines[3] and "2.00" in lines[3]
    with pytest.raises(ValueError):
        tables.compare_table(a, ResultsFile("other", {}, []))


def test_summary_is_written_from_results(tmp_path):
    from segbench import summary

    fp32 = {"precision": "fp32"}
    quant = [rec("mobilenetv4_conv_small+fpn", runtime="eager", tp=10.0, key="q1", extra=fp32),
             rec("mobilenetv4_conv_small+fpn", runtime="ort-fp32", tp=20.0, key="q2",
                 extra=fp32),
             rec("mobilenetv4_conv_small+fpn", runtime="ort-int8", tp=15.0, key="q3",
                 fidelity={"label_agreement": 97.5}, extra={"precision": "int8"})]
    save(tmp_path / "quantization" / "fake-2c.json", ResultsFile("quantization", MACHINE, quant))
    fid = [rec("mobilenetv4_conv_small+fpn", runtime="eager", key="f1", extra={"dice": 0.85}),
           rec("mobilenetv4_conv_small+fpn", runtime="ort-int8", key="f2",
               extra={"dice": 0.83})]
    save(tmp_path / "fidelity" / "fake-2c.json", ResultsFile("fidelity", MACHINE, fid))
    text = summary.render(tmp_path)
    runtime = next(ln for ln in text.splitlines() if ln.startswith("| mobilenetv4")
                   and "`ort-fp32`" in ln)
    cells = [c.strip() for c in runtime.strip("|").split("|")]
    assert cells[1:4] == ["`ort-fp32`", "20.0", "2.00x"]
    assert cells[4] == "does not pay: `ort-int8` is 0.75x `ort-fp32`"
    assert "97.5 % label agreement" in cells[5] and "below the 99 % mark" in cells[5]
    assert "Dice -0.020 on trained weights" in cells[5]
    quality = [c.strip() for c in text.splitlines()[-4].strip("|").split("|")]
    assert quality == ["mobilenetv4_conv_small+fpn", "0.850", "none", "ort-int8 (-0.020)"]
    assert summary.render(tmp_path / "empty") == "_No full runs committed yet._"
    # prose is wrapped for a person reading the Markdown source; tables are not
    assert all(len(ln) <= 100 for ln in text.splitlines() if not ln.startswith("|"))


def test_every_benchmark_renders_ok_failed_and_empty_results():
    """A benchmark's tables must survive any mix of rows (a failed pair, a missing baseline)."""
    from segbench.readme import discover

    benchmarks = discover(ROOT / "benchmarks")
    assert {"encoder_only", "fpn_decoder", "unet_decoder", "combined", "quantization",
            "2d_vs_3d", "fidelity"} <= set(benchmarks)
    ok = rec("resnet18+fpn", family="fpn", key="fpn|resnet18|117|eager|",
             extra={"params_enc_dec": 12_000_000, "dice": 0.9, "display": "ResNet18 + FPN"})
    bad = rec("resnet18+unet", family="unet", status="failed", reason="runtime: boom",
              key="unet|resnet18|117|eager|")
    for name, bench in benchmarks.items():
        for records in ([ok, bad], [bad], []):
            text = bench.render(ResultsFile(name, MACHINE, list(records)))
            assert "Measured on Fake CPU" in text, name
            # 2d_vs_3d and this_cpu show only rows of their own kind (a 2D pair / a pipeline
            # with a method key), which these generic records are not
            if bad in records and name not in ("2d_vs_3d", "this_cpu"):
                assert "boom" in text, name
