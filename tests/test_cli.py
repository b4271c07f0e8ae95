"""Bad input: one clear line on stderr, exit code 2, no traceback, before any work."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from segbench import bench


def run_main(encoder_bench, capsys, *argv):
    code = bench.main(encoder_bench, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, message", [
    (["--models", "resnet18,resnet999"], "unknown model 'resnet999'; valid: "),
    (["--runtimes", "tensorrt"], "unknown runtime 'tensorrt'; valid: eager, compile"),
    (["--size", "500"], "--size 500: these networks need a multiple of 32 (e.g. 480 or 512)"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--size", "big"], "argument --size: invalid int value: 'big'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(encoder_bench, capsys, tmp_path, argv, message):
    code, out, err = run_main(encoder_bench, capsys, "--out", str(tmp_path), *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "encoder_only").exists()  # nothing ran


def test_unwritable_out_is_refused_before_any_work(encoder_bench, capsys, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    if os.access(target, os.W_OK):  # running as root: permissions do not bind
        target = tmp_path / "file-not-dir"
        target.write_text("")
    code, _, err = run_main(encoder_bench, capsys, "--out", str(target / "sub"))
    assert code == 2 and "not writable" in err and err.count("\n") == 1


def test_unreadable_results_file_is_reported_and_kept(encoder_bench, capsys, tmp_path):
    from segbench import machine
    bad = tmp_path / "encoder_only" / f"{machine.slug()}.json"
    bad.parent.mkdir()
    bad.write_text("garbage")
    code, _, err = run_main(encoder_bench, capsys, "--out", str(tmp_path), "--models", "resnet18")
    assert code == 2 and "unreadable results file" in err
    assert bad.read_text() == "garbage"


def test_list_names_at_least_13_encoders_and_the_runtimes(encoder_bench, capsys):
    code, out, _ = run_main(encoder_bench, capsys, "--list")
    assert code == 0
    models = out.split("runtimes:")[0].splitlines()[1:]
    assert len(models) >= 13
    assert "mobilenetv4_conv_small" in out and "compile-bf16" in out


def test_script_exits_2_without_traceback():
    """The real entry point, as a user runs it."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/encoder_only/benchmark.py"),
                           "--size", "100"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.strip().endswith("need a multiple of 32 (e.g. 96 or 128)")


# Wildcards and the dry run -----------------------------------------------------------------

def test_wildcards_expand_in_the_valid_order_without_duplicates():
    from segbench import cli
    valid = ["mobilenetv4_conv_medium", "mobilenetv4_conv_small", "resnet18"]
    assert cli.expand_names("model", ["mobilenetv4*", "mobilenetv4_conv_small", "res*"],
                            valid) == valid
    assert cli.expand_names("runtime", ["openvino-*", "eager"],
                            ["eager", "openvino-fp32", "openvino-bf16"]) == [
        "openvino-fp32", "openvino-bf16", "eager"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "nosuchnet*"], "model pattern 'nosuchnet*' matches nothing; valid: "),
    (["--runtimes", "tensorrt-*"], "runtime pattern 'tensorrt-*' matches nothing; valid: eager"),
    (["--models", "resnet18,mobilenetv4*,resnet999"], "unknown model 'resnet999'"),
])
def test_a_pattern_matching_nothing_is_a_usage_error(encoder_bench, capsys, tmp_path, argv,
                                                     message):
    code, out, err = run_main(encoder_bench, capsys, "--out", str(tmp_path), "--dry-run", *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


def test_dry_run_prints_the_matrix_and_times_nothing(encoder_bench, capsys, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(bench, "run_isolated", lambda *a, **k: pytest.fail("a cell ran"))
    code, out, _ = run_main(encoder_bench, capsys, "--out", str(tmp_path), "--dry-run",
                            "--models", "mobilenetv4*", "--runtimes", "eager,ort-*",
                            "--size", "64", "--threads", "1")
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("| ") and "model" not in ln]
    assert len(lines) == 2 * 3  # 2 networks x (eager, ort-fp32, ort-int8)
    assert "mobilenetv4_conv_small" in out and "ort-int8" in out and "1x3x64x64" in out
    assert "6 cells; estimated duration: unknown" in out and "nothing was timed" in out
    assert not (tmp_path / "encoder_only").exists()


def test_dry_run_estimates_from_past_records(encoder_bench, capsys, tmp_path):
    from segbench import machine
    from segbench.cell import Cell
    from segbench.models import ModelSpec
    from segbench.results import Record, ResultsFile, results_path, save

    cell = Cell("encoder_only", ModelSpec("encoder", "resnet18"), "eager", (1, 3, 64, 64), 1)
    same = Record(benchmark="encoder_only", key=cell.key, model="resnet18", runtime="eager",
                  shape=[1, 3, 64, 64], batch=1, threads=1, elapsed_s=30.0)
    other_size = Record(benchmark="encoder_only", key="x", model="resnet18",
                        runtime="ort-fp32", shape=[1, 3, 512, 512], batch=1, threads=2,
                        elapsed_s=90.0)
    path = results_path(tmp_path, "encoder_only", machine.slug(), False)
    save(path, ResultsFile("encoder_only", machine.capture(), [same, other_size]))
    code, out, _ = run_main(encoder_bench, capsys, "--out", str(tmp_path), "--dry-run",
                            "--models", "resnet18,regnetx_002", "--runtimes", "eager,ort-fp32",
                            "--size", "64", "--threads", "1")
    assert code == 0
    assert "| 30 s " in out and "| 1 min 30 s " in out
    assert "estimated duration: 2 min 00 s for 2 of 4 cells; the other 2 unknown" in out


def test_remaining_time_uses_past_durations_then_the_mean_so_far():
    assert bench.remaining([10.0, None, 30.0], []) is None
    assert bench.remaining([10.0, 20.0, 30.0], []) == 60.0
    assert bench.remaining([10.0, None, None], [12.0]) == 24.0  # unknowns: mean of done cells
    assert bench.remaining([None, None, 30.0], [10.0, 20.0]) == 30.0


def test_dry_run_estimates_from_an_older_file_of_the_same_cpu(encoder_bench, capsys, tmp_path):
    from segbench import machine
    from segbench.cell import Cell
    from segbench.models import ModelSpec
    from segbench.results import Record, ResultsFile, save

    cell = Cell("encoder_only", ModelSpec("encoder", "resnet18"), "eager", (1, 3, 64, 64), 1)
    old = Record(benchmark="encoder_only", key=cell.key, model="resnet18", runtime="eager",
                 shape=[1, 3, 64, 64], batch=1, threads=1, elapsed_s=42.0)
    here = machine.capture()
    block = {"cpu": here["cpu"], "physical_cores": here["physical_cores"]}
    save(tmp_path / "encoder_only" / "older-name-2c.json",
         ResultsFile("encoder_only", block, [old]))
    code, out, _ = run_main(encoder_bench, capsys, "--out", str(tmp_path), "--dry-run",
                            "--models", "resnet18", "--runtimes", "eager", "--size", "64",
                            "--threads", "1")
    assert code == 0 and "| 42 s " in out and "older-name-2c.json" in out
