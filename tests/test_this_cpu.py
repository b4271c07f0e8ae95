"""this_cpu: which pipelines it times, where their quality columns come from, its verdict."""

import shutil
import subprocess
import sys
from pathlib import Path

from segbench.benchmarks.this_cpu import plan, view
from segbench.results import Record, ResultsFile, save

ROOT = Path(__file__).resolve().parents[1]
MACHINE = {"cpu": "Test CPU", "physical_cores": 2, "microarchitecture": "Zen 4", "family": 25,
           "model": 17}


def _timed(method, runtime, seconds, network, path="full", shape=(280, 512, 512)):
    return Record(benchmark="this_cpu", key=f"{method}|{runtime}", model=network,
                  name=network, runtime=runtime, shape=[1, 3, 1, 1], batch=1, threads=2,
                  timing={"latency_p50_ms": seconds * 1e3},
                  extra={"method": method, "title": method, "ct_shape": list(shape),
                         "ct_source": "phantom", "pipeline": {"path": path}})


def _trained(method, path, runtime, dice, network, key_tail=""):
    ds = {"name": "Test set", "split": "test", "cases": 3}
    return Record(benchmark="real_ct", key=f"trained|Test set|{method}|{path}|{runtime}{key_tail}",
                  model=method, runtime=runtime, shape=[1], batch=1, threads=2,
                  extra={"kind": "trained", "method": method, "path": path, "network": network,
                         "mean_dice": dice, "mean_nsd": dice / 2, "dataset": ds,
                         "training": {"budget": "20 core-minutes of CPU time"}})


def _results_dir(tmp_path, real_records):
    save(tmp_path / "real_ct" / "test-cpu.json", ResultsFile("real_ct", MACHINE, real_records))
    return tmp_path


def test_without_results_it_times_the_original_and_the_3d_network_under_a_fallback(tmp_path):
    picked = plan.choices(tmp_path, "nothing", quick=False)
    assert [c.key for c in picked] == ["original", "3d-fast"]
    assert picked[0].runtime == plan.ORIGINAL_RUNTIME and picked[0].pipeline.path == "full"
    assert picked[1].runtime == plan.FALLBACK_3D_RUNTIME and picked[1].pipeline.kind == "3d"
    assert all(c.spec().options.get("train") is None for c in picked)  # random weights
    quick = plan.choices(tmp_path, "nothing", quick=True)
    assert {c.runtime for c in quick} == {plan.QUICK_RUNTIME}


def test_the_champion_and_its_exact_twin_come_from_the_committed_champion_run(tmp_path):
    if not any((ROOT / "results" / "champion").glob("*.json")):
        import pytest

        pytest.skip("no committed champion results in this checkout")
    shutil.copytree(ROOT / "results" / "champion", tmp_path / "champion")
    picked = {c.key: c for c in plan.choices(tmp_path, "no-such-machine", quick=False)}
    champ = picked["champion"]
    assert champ.source.endswith(".json") and champ.network.endswith("-w64")
    if champ.pipeline.path in ("lowres",):  # a coarse champion brings its exact path along
        exact = picked["champion-exact"]
        assert exact.network == champ.network and exact.pipeline.path != "lowres"


def test_the_verdict_is_the_fastest_pipeline_within_the_tolerance_on_real_ct(tmp_path):
    net = "mobilenetv4_conv_small-w64"
    real = [_trained("2d-original", "full", "eager", 0.48, "mobilenetv4_conv_small"),
            _trained("2d-champion", "lowres", "eager", 0.36, net),
            _trained("2d-champion", "full", "eager", 0.482, net),
            _trained("2d-champion", "full", "compile-int8", 0.481, net),
            _trained("3d-fast", "nearest", "eager", 0.0, "totalseg-3mm"),
            # a longer-budget row beside the equal-budget one is never quoted as it
            _trained("3d-fast", "nearest", "openvino-bf16", 0.9, "totalseg-3mm", "|80cm")]
    results_dir = _results_dir(tmp_path, real)
    mine = ResultsFile("this_cpu", MACHINE, [
        _timed("original", "ort-fp32", 20.0, "mobilenetv4_conv_small"),
        _timed("champion", "compile-int8", 2.0, net, "lowres"),
        _timed("champion-exact", "compile-int8", 4.0, net, "blocked"),
        _timed("3d-fast", "openvino-bf16", 15.0, "totalseg-3mm")],
        path=results_dir / "this_cpu" / "test-cpu.json")
    (table_caption, table), (_, notes) = view.tables(None, mine)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "0.360 / 0.180" in rows["champion"]  # lowres quoted as lowres
    assert "0.481 / 0.240" in rows["champion-exact"]  # an exact path reads full's row
    assert "0.000 / 0.000 (eager)" in rows["3d-fast"]  # its runtime missing there: eager
    assert "| 1.0x " in rows["original"] and "| 10.0x " in rows["champion"]
    assert "5.0x" in rows["champion-exact"] and "71.4" in rows["original"]  # ms per slice
    assert "champion-exact under `compile-int8`: 4.00 s per CT" in notes
    assert "Test set, 3 test cases" in notes and "20 core-minutes" in notes


def test_a_champion_of_another_network_is_not_scored_with_the_real_ct_champion(tmp_path):
    real = [_trained("2d-champion", "lowres", "eager", 0.36, "mobilenetv4_conv_small-w64")]
    dice, _, _ = view.real_quality([ResultsFile("real_ct", MACHINE, real)], "champion",
                                   "lowres", "eager", "resnet18-w64")
    assert dice is None


def test_without_real_ct_results_the_table_says_quality_on_real_anatomy_is_unknown(tmp_path):
    mine = ResultsFile("this_cpu", MACHINE,
                       [_timed("original", "ort-fp32", 20.0, "mobilenetv4_conv_small")],
                       path=tmp_path / "this_cpu" / "test-cpu.json")
    _, (_, notes) = view.tables(None, mine)
    assert "quality on real anatomy is unknown" in notes


def test_a_cold_quick_run_of_one_pipeline_prints_its_estimate_and_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "this_cpu" / "benchmark.py"), "--quick",
         "--models", "original", "--out", str(tmp_path), "--retry-contended", "0"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "this_cpu: 1 cells; estimated duration" in out.stderr
    assert "| 2D original recipe" in out.stdout and "s / CT" in out.stdout
    assert list((tmp_path / "this_cpu").glob("*.quick.json"))


def test_a_user_mistake_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "this_cpu" / "benchmark.py"), "--models",
         "nope", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def _searched(variant, runtime, seconds, dice, reference=False):
    return Record(benchmark="champion_3d", key=f"{variant}|{runtime}", model="totalseg-3mm",
                  runtime=runtime, shape=[1, 1, 8, 8, 8], batch=1, threads=2,
                  timing={"latency_p50_ms": seconds * 1e3},
                  extra={"method": f"3d-{variant}", "variant": variant, "dice_vs_eager": dice,
                         "reference_row": reference})


def test_the_3d_row_runs_the_3d_champion_of_a_champion_3d_run(tmp_path):
    rows = [_searched("tool", "eager", 77, None, reference=True),
            _searched("tool", "openvino-fp32", 45, 0.993),
            _searched("tool", "openvino-int8", 23, 0.5)]  # faster, labels moved: not it
    save(tmp_path / "champion_3d" / "test-cpu.json", ResultsFile("champion_3d", MACHINE, rows))
    assert plan.best_3d_runtime(tmp_path, "test-cpu") == ("openvino-fp32", "test-cpu.json")
    # a champion of another pipeline (one tile over the grid) is not what this_cpu runs
    rows.append(_searched("whole-tile", "openvino-bf16", 10, 0.995))
    save(tmp_path / "champion_3d" / "test-cpu.json", ResultsFile("champion_3d", MACHINE, rows))
    assert plan.best_3d_runtime(tmp_path, "test-cpu") == (plan.FALLBACK_3D_RUNTIME, "")


def test_a_pipeline_shows_only_the_rows_of_its_newest_run():
    old = _timed("3d-fast", "openvino-bf16", 44, "totalseg-3mm")
    old.commit, old.date = "aaa", "2026-12-01T10:00:00+00:00"
    new = _timed("3d-fast", "openvino-fp32", 58, "totalseg-3mm")
    new.commit, new.date = "bbb", "2026-12-03T10:00:00+00:00"
    also = _timed("original", "ort-fp32", 54, "mobilenetv4_conv_small")
    also.commit, also.date = "aaa", "2026-12-01T09:00:00+00:00"
    assert view.latest_run([old, new, also]) == [new, also]
