"""Nothing lost under faults: concurrent writers, SIGTERM / SIGINT during a cell, a worker killed
with SIGKILL, a results file truncated by a crash. Tiny networks ("testing" family), no timing
asserted: the waits below are deadlines for a broken harness, not measurements."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from segbench import bench, cli, machine, stop
from segbench.results import Record, ResultsFile, load, results_path, update

SCRIPT = '''
from segbench.bench import Benchmark, main

BENCHMARK = Benchmark(name="faults", title="fault tests", families=["testing"],
                      models=["tiny", "hang"], quick_models=["tiny", "hang"])
raise SystemExit(main(BENCHMARK))
'''
DEADLINE_S = 120  # only ever reached when something is broken


def record(key, model="m"):
    return Record(benchmark="faults", key=key, model=model, runtime="eager", shape=[1, 3, 32, 32],
                  batch=1, threads=1)


def wait_for(condition, what):
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- one writer at a time ---------------------------------------------------------------------

WRITER = '''
import sys
from segbench.results import Record, ResultsFile, update
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    r = Record(benchmark="faults", key=f"{who}-{i}", model=who, runtime="eager", shape=[1],
               batch=1, threads=1)
    update(path, ResultsFile("faults", {"cpu": "test"}), [r])
'''


def test_two_concurrent_writers_both_keep_their_records(tmp_path):
    path = tmp_path / "faults" / "cpu.json"
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(n)])
             for who in ("first", "second")]
    assert [p.wait(timeout=DEADLINE_S) for p in procs] == [0, 0]
    keys = {r.key for r in load(path, "faults").records}
    assert keys == {f"{who}-{i}" for who in ("first", "second") for i in range(n)}
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_a_run_keeps_what_another_run_wrote_meanwhile(tmp_path):
    """The run read the file before the other run's record existed; saving its own cell
    re-reads the file under the lock instead of writing its stale copy."""
    b = bench.Benchmark(name="faults", title="t", families=["testing"], models=["tiny"],
                        quick_models=["tiny"])
    opts = cli.Options(models=["tiny"], runtimes=["eager"], size=32, batch=1, threads=1,
                       classes=2, repeats=1, quick=True, out=tmp_path, timeout=60, list=False,
                       retry_contended=0)
    path = tmp_path / "faults" / "x.quick.json"
    stale = ResultsFile("faults", {"cpu": "test"})  # what this run loaded at its start
    update(path, ResultsFile("faults", {"cpu": "test"}), [record("other-run")])
    bench.run(b, opts, stale, path)
    assert {r.model for r in load(path).records} == {"m", "tiny"}


# --- stopping ---------------------------------------------------------------------------------

def start_run(tmp_path, *argv):
    script = tmp_path / "faults_benchmark.py"
    script.write_text(SCRIPT)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONWARNINGS": "ignore"}
    err = open(tmp_path / "stderr", "w")
    proc = subprocess.Popen([sys.executable, str(script), "--quick", "--models", "tiny,hang",
                             "--size", "32", "--threads", "1", "--repeats", "1", "--classes",
                             "2", "--retry-contended", "0", "--out", str(tmp_path / "out"),
                             *argv], stdout=subprocess.DEVNULL, stderr=err, env=env)
    return proc, results_path(tmp_path / "out", "faults", machine.slug(), True), tmp


def finished(path):
    try:
        return [r.model for r in load(path).records]
    except Exception:  # noqa: BLE001 - not written yet
        return []


@pytest.mark.parametrize("signum, isolate", [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_a_stop_during_a_cell_ends_every_process_and_keeps_the_file(tmp_path, signum, isolate):
    """SIGTERM (a scheduler) with the cell in its own worker session, SIGINT (Ctrl-C) with the
    cell in the run's own process: either way exit 128 + signal, one line saying where the
    finished cells are, no process and no temporary directory of the run left."""
    proc, path, tmp = start_run(tmp_path, *(["--isolate"] if isolate else []))
    seen = set()

    def hang_running():
        seen.update(stop.descendants(proc.pid))
        if "tiny" not in finished(path):
            return False
        if isolate:  # the hang cell's worker has started
            return any("segbench.worker" in cmdline(p) for p in seen if alive(p))
        return "hang" in (tmp_path / "stderr").read_text()

    try:
        wait_for(hang_running, "the tiny cell to finish and the hang cell to start")
        seen.update(stop.descendants(proc.pid))
        proc.send_signal(signum)
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "stderr").read_text()
    assert code == 128 + signum, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == f"stopped by {signal.Signals(signum).name}; finished cells are kept in {path}"
    deadline = time.monotonic() + 5  # the bound: nothing of the run after 5 s
    while any(alive(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in seen if alive(p)], [cmdline(p) for p in seen if alive(p)]
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("segbench-")]
    data = json.loads(path.read_text())  # valid JSON, the finished cell intact
    assert [(r["model"], r["status"]) for r in data["records"]] == [("tiny", "ok")]


def test_a_worker_killed_with_sigkill_is_a_row_and_the_run_goes_on(tmp_path):
    b = bench.Benchmark(name="faults", title="t", families=["testing"],
                        models=["hang", "tiny"], quick_models=["tiny"])
    opts = cli.Options(models=["hang", "tiny"], runtimes=["eager"], size=32, batch=1,
                       threads=1, classes=2, repeats=1, quick=True, out=tmp_path,
                       timeout=DEADLINE_S, list=False, isolate=True, retry_contended=0)
    path = tmp_path / "faults" / "x.quick.json"
    killed = []

    def kill_the_worker():  # as the OOM killer or a user's kill -9 would
        def worker():
            return next((p for p in stop.descendants(os.getpid())[1:]
                         if "segbench.worker" in cmdline(p)), None)

        wait_for(lambda: worker() is not None, "the hang cell's worker")
        pid = worker()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    records = bench.run(b, opts, ResultsFile("faults", {}), path)
    killer.join()
    by_model = {r.model: r for r in records}
    assert killed
    assert by_model["hang"].status == "failed"
    assert by_model["hang"].reason.startswith("killed (likely out of memory")
    assert by_model["tiny"].status == "ok"
    assert [r.model for r in load(path).records] == ["hang", "tiny"]


def test_a_results_file_truncated_by_a_crash_is_refused_and_left_untouched(tmp_path, capsys):
    b = bench.Benchmark(name="faults", title="t", families=["testing"], models=["tiny"],
                        quick_models=["tiny"])
    path = results_path(tmp_path, "faults", machine.slug(), True)
    update(path, ResultsFile("faults", machine.capture()), [record("a"), record("b")])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # what a crash mid-write leaves (not ours)
    cut = path.read_bytes()
    code = bench.main(b, ["--quick", "--size", "32", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "unreadable results file" in err and str(path) in err
    assert path.read_bytes() == cut


def test_a_stop_while_a_record_is_saved_waits_for_the_save():
    with stop.on_signals():
        with pytest.raises(stop.Stopped) as raised:
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                saved = True  # the block finishes before the stop is raised
        assert saved and raised.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


# --- a CT that is not what it claims ----------------------------------------------------------

WHOLE_CT = Path(__file__).resolve().parents[1] / "benchmarks" / "whole_ct" / "benchmark.py"


def ct_volume(shape=(64, 64, 40)):
    """(x, y, z) HU: noise around soft tissue with air along one side."""
    import numpy as np

    hu = np.random.default_rng(0).normal(40, 200, shape)
    hu[: shape[0] // 8] = -1000
    return hu


def write_nifti(path, data, zooms=(0.8, 0.8, 2.0), dtype="int16"):
    """NIfTI as a user's tool would write it; the spacing goes into the header as given (zero
    and negative included, which nibabel itself would correct on reading)."""
    import nibabel as nib
    import numpy as np

    img = nib.Nifti1Image(np.asarray(data).astype(dtype), np.eye(4))
    img.header["pixdim"][1:4] = zooms
    nib.save(img, str(path))
    return path


def truncated(path):
    good = write_nifti(path, ct_volume())
    whole = good.read_bytes()
    good.write_bytes(whole[: len(whole) // 2])
    return good


def corrupt(path):
    good = write_nifti(path, ct_volume())
    whole = bytearray(good.read_bytes())
    middle = len(whole) // 2
    whole[middle:middle + 64] = bytes(64)  # a damaged block inside the compressed stream
    good.write_bytes(bytes(whole))
    return good


def with_nan(path):
    hu = ct_volume().astype("float32")
    hu[10, 10, 5] = float("nan")
    return write_nifti(path, hu, dtype="float32")


BAD_CTS = {
    "truncated": (truncated, "truncated or corrupt"),
    "corrupt": (corrupt, "truncated or corrupt"),
    "nan": (with_nan, "1 of 163840 voxels are NaN or infinite"),
    "too small": (lambda p: write_nifti(p, ct_volume((8, 8, 3))),
                  "8x8x3 voxels (x, y, z) is smaller than the whole-CT pipelines need: at least "
                  "32 x 32 in plane"),
    "zero spacing": (lambda p: write_nifti(p, ct_volume(), (0.8, 0.0, 2.0)),
                     "spacing must be positive"),
    "negative spacing": (lambda p: write_nifti(p, ct_volume(), (0.8, 0.8, -2.0)),
                         "spacing must be positive"),
    "spacing in metres": (lambda p: write_nifti(p, ct_volume(), (0.0008, 0.0008, 0.002)),
                          "(given in metres?)"),
    "absurd spacing": (lambda p: write_nifti(p, ct_volume(), (0.8, 0.8, 80.0)),
                       "a CT's lies between 0.05 and 20 mm"),
    "label map": (lambda p: write_nifti(
        p, (ct_volume() > 100).astype("uint8") * 3, dtype="uint8"), "a label map"),
    "0-1 volume": (lambda p: write_nifti(
        p, (ct_volume() + 1000) / 4000, dtype="float32"), "values in 0-1"),
}


@pytest.mark.parametrize("name", BAD_CTS)
def test_a_bad_ct_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, name):
    make, message = BAD_CTS[name]
    path = make(tmp_path / "ct.nii.gz")
    code = bench.main(bench.load_script(WHOLE_CT),
                      ["--input", str(path), "--out", str(tmp_path / "out"), "--quick"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "whole_ct").exists()  # no work done, no file written


def test_an_unusual_ct_runs_and_its_rows_say_what_was_unusual(tmp_path):
    """A 2 mm slab of 20 slices, 45 x 50 voxels of 0.8 mm (a crop: padded to 64 x 64 for the
    2D networks): accepted, and every cell carries what was unusual into its row."""
    from segbench.benchmarks.whole_ct import view as wb
    from segbench.catalogue import Pipeline
    from segbench.cell import Cell
    from segbench.measure import Protocol
    from segbench.models import ModelSpec
    from segbench.worker import run_cell

    path = write_nifti(tmp_path / "slab.nii.gz", ct_volume((50, 45, 20)), (0.8, 0.8, 2.0))
    b = bench.load_script(WHOLE_CT)
    opts = b.parse(["--input", str(path), "--out", str(tmp_path), "--dry-run",
                    "--models", "2d-original"])
    cells = b.make_cells(opts)
    unusual = cells[0].extra["ct_unusual"]
    assert any("slab of 20 slices (40 mm along z)" in u for u in unusual)
    assert any("padded with air to 64 x 64" in u for u in unusual)
    # the slab runs through a 2D pipeline (here a tiny network) and its record says so
    pipe = Pipeline("2d", "tiny", 3, batch=4)
    cell = Cell(benchmark="whole_ct", model=ModelSpec("testing", "tiny", 3), runtime="eager",
                shape=(4, 3, 64, 64), threads=1, fidelity=False, extra=dict(cells[0].extra),
                protocol=Protocol(warmup_calls=0, warmup_seconds=0.0, repeats=1,
                                  repeat_seconds=0.0, repeat_calls=1, quick=True),
                scenario={"kind": "whole_ct", "ct": cells[0].scenario["ct"],
                          "pipeline": pipe.to_dict(), "quality": "agreement",
                          "estimate_passes": 0})
    r = run_cell(cell)
    assert r.ok, r.reason
    assert r.extra["ct_shape"] == [20, 45, 50] and r.extra["ct_unusual"] == unusual
    status = wb.per_ct_rows([r])[0][-1]
    assert status.startswith("ok; unusual CT: a slab of 20 slices")


def test_a_head_sized_ct_runs_with_a_note():
    from segbench.pipelines import scan

    head = scan.unusual_ct((40, 64, 64), (4.0, 3.5, 3.5), low=-1000.0)  # 224 mm across
    assert head == ("in-plane field of view 224 x 224 mm, smaller than a body (a head, a limb "
                    "or a crop?)",)
    assert scan.unusual_ct((280, 512, 512), (1.5, 0.78, 0.78), low=-1024.0) == ()


# --- a row names what it ran ------------------------------------------------------------------

def test_without_champion_results_2d_best_says_what_it_ran_instead_and_why(tmp_path):
    from segbench.benchmarks.whole_ct import view as wb

    b = bench.load_script(WHOLE_CT)
    opts = b.parse(["--out", str(tmp_path), "--dry-run", "--models", "2d-best"])
    (cell,) = b.make_cells(opts)
    assert cell.extra["title"].startswith(wb.STAND_IN_TITLE)
    assert "champion" not in cell.extra["title"].replace(wb.STAND_IN_TITLE, "")
    assert "no champion results for this machine" in cell.extra["stand_in"]
    assert cell.extra["note"].startswith("NOT the champion (no champion results")
    assert "ran mobilenetv4_conv_small + FPN 128 under openvino-bf16" in cell.extra["note"]
    # a record of the stand-in written before rows said so is not shown as the champion either
    old = Record(benchmark="whole_ct", key="k", model="mobilenetv4_conv_small+fpn-labels",
                 runtime="openvino-bf16", shape=[4, 3, 1, 1], batch=4, threads=2,
                 extra={"method": "2d-best", "title": "2D best pipeline"})
    assert wb.row_title(old) == f"{wb.STAND_IN_TITLE} (mobilenetv4_conv_small+fpn-labels)"
    champion = Record(**{**old.to_dict(), "extra": {"method": "2d-best",
                                                    "title": "2D champion (resnet18-w64)"}})
    assert wb.row_title(champion) == "2D champion (resnet18-w64)"
