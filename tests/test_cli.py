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
