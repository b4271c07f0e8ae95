"""run_all.py with tiny fake benchmark scripts: --quick forks each one from a parent that
imported the shared modules once (segbench.forkrun), a full run starts each fresh; exit codes,
command lines, and a stop that leaves no process of the run behind."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segbench import forkrun

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = "segbench_preload_stand_in"  # a module the test preloads instead of torch


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all_cmd", ROOT / "benchmarks/run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_script(root: Path, name: str, body: str) -> Path:
    """benchmarks/<name>/benchmark.py under ``root``: records what it saw in <name>.json,
    then runs ``body``."""
    path = root / "benchmarks" / name / "benchmark.py"
    path.parent.mkdir(parents=True)
    out = root / f"{name}.json"
    path.write_text(textwrap.dedent(f"""\
        import json, os, sys
        seen = {{"argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(),
                 "preloaded": {STAND_IN!r} in sys.modules, "path0": sys.path[0],
                 "sigterm_default": __import__("signal").getsignal(15) == 0}}
        open({str(out)!r}, "w").write(json.dumps(seen))
        """) + textwrap.dedent(body))
    return path


def seen(root: Path, name: str) -> dict:
    return json.loads((root / f"{name}.json").read_text())


@pytest.fixture
def run_all(tmp_path, monkeypatch):
    module = load_run_all()
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "PRELOAD", ())
    monkeypatch.setattr(module, "PRELOAD_ENV", {})
    return module


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A module whose import appends this process's id to a file: imported once, by whom."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{STAND_IN}.py").write_text(
        f"import os\nopen({str(tmp_path / 'imports')!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, STAND_IN, raising=False)
    yield tmp_path / "imports"
    sys.modules.pop(STAND_IN, None)


def test_fork_runner_exit_codes_and_argv(tmp_path):
    cases = {"ok": ("", 0), "three": ("raise SystemExit(3)", 3),
             "boom": ("raise ValueError('broken script')", 1),
             "message": ("raise SystemExit('a message')", 1)}
    for name, (body, code) in cases.items():
        script = write_script(tmp_path, name, body)
        assert forkrun.run([str(script), "--quick", "--x", "y"], tmp_path) == code, name
        assert seen(tmp_path, name)["argv"] == [str(script), "--quick", "--x", "y"]
        assert seen(tmp_path, name)["pid"] != os.getpid()
        assert seen(tmp_path, name)["path0"] == str(script.parent)


def test_quick_forks_with_the_subprocess_command_line(run_all, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(run_all, "NEEDS_DATA", {"needs": ("--dataset", "--observers")})
    write_script(tmp_path, "ok", "")
    write_script(tmp_path, "three", "raise SystemExit(3)")
    write_script(tmp_path, "boom", "raise ValueError('broken script')")
    write_script(tmp_path, "needs", "")
    assert run_all.main(["--quick", "--dataset", "D"]) == 1
    script = str(tmp_path / "benchmarks/{}/benchmark.py")
    for name in ("ok", "three", "boom"):
        assert seen(tmp_path, name)["argv"] == [script.format(name), "--quick"]
        assert seen(tmp_path, name)["cwd"] == str(tmp_path)
        assert seen(tmp_path, name)["sigterm_default"]  # not the parent's stop handler
    assert seen(tmp_path, "needs")["argv"] == [script.format("needs"), "--quick", "--dataset", "D"]
    err = capfd.readouterr().err
    assert "ValueError: broken script" in err
    assert "2/4 benchmarks completed" in err and "failed: boom, three" in err


def test_full_run_starts_fresh_processes(run_all, tmp_path):
    write_script(tmp_path, "ok", "")
    assert run_all.main(["--no-report"]) == 0
    assert seen(tmp_path, "ok")["argv"] == [str(tmp_path / "benchmarks/ok/benchmark.py")]


def test_preloaded_module_is_imported_once_and_seen_by_the_child(run_all, tmp_path, stand_in,
                                                                  monkeypatch):
    monkeypatch.setattr(run_all, "PRELOAD", (STAND_IN,))
    write_script(tmp_path, "ok", f"import {STAND_IN}")
    assert run_all.main(["--quick"]) == 0
    assert seen(tmp_path, "ok")["preloaded"]
    assert stand_in.read_text().split() == [str(os.getpid())]  # the parent, once


def test_a_module_that_fails_to_preload_is_left_to_the_benchmarks(run_all, tmp_path, monkeypatch,
                                                                   capfd):
    monkeypatch.setattr(run_all, "PRELOAD", ("segbench_no_such_module",))
    write_script(tmp_path, "ok", "")
    assert run_all.main(["--quick"]) == 0
    assert "segbench_no_such_module not preloaded" in capfd.readouterr().err


# --------------------------------------------------------------------------------------------
# A stop: run_all in a process of its own, sent SIGTERM while its forked benchmark sleeps

DRIVER = """
import importlib.util, sys
from pathlib import Path
from segbench import forkrun
spec = importlib.util.spec_from_file_location("run_all_cmd", sys.argv[1])
run_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_all)
run_all.ROOT, run_all.PRELOAD, run_all.PRELOAD_ENV = Path(sys.argv[2]), (), {}
forkrun.GRACE_S = 0.5
raise SystemExit(run_all.main(["--quick"]))
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_for(predicate, limit=20.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("body", [
    "import time; time.sleep(60)",  # ends at the forwarded SIGTERM
    # ignores it and has a process of its own: both are killed after the grace period
    """
    import signal, subprocess, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    p = subprocess.Popen(["sleep", "60"])
    open(sys.argv[0] + ".grandchild", "w").write(str(p.pid))
    time.sleep(60)
    """,
], ids=["ends", "ignores"])
def test_sigterm_to_run_all_ends_the_benchmark_and_returns_the_stop_code(tmp_path, body):
    script = write_script(tmp_path, "a_sleeper", body)
    write_script(tmp_path, "b_after", "")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(ROOT / "benchmarks/run_all.py"),
                             str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "a_sleeper.json").exists())
        grandchild = Path(str(script) + ".grandchild")
        if "grandchild" in body:
            wait_for(grandchild.exists)
        proc.send_signal(signal.SIGTERM)  # to run_all alone, as a scheduler would
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err
    assert not (tmp_path / "b_after.json").exists()
    pids = [seen(tmp_path, "a_sleeper")["pid"]]
    if grandchild.exists():
        pids.append(int(grandchild.read_text()))
    wait_for(lambda: not any(alive(pid) for pid in pids), limit=5)
