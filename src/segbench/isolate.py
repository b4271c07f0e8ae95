"""One cell in a fresh Python process, with a timeout.

A fresh process gives every cell clean thread pools, compile caches and allocator state, and
turns a crash (a segfaulting kernel, an OOM kill), a hang or an exception into a record with a
one-line reason, so the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from segbench import stop
from segbench.cell import Cell
from segbench.results import Record
from segbench.worker import ESTIMATE_FILE_ENV, blank_record

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_isolated(cell: Cell, timeout: float) -> Record:
    """Run ``cell`` in a subprocess; always returns a record, whatever happened there."""
    with tempfile.TemporaryDirectory(prefix="segbench-cell-") as tmp:
        tmpdir = Path(tmp)
        cell_path, out_path, log_path = tmpdir / "cell.json", tmpdir / "record.json", tmpdir / "log"
        cell_path.write_text(json.dumps(cell.to_dict()))
        env = worker_env(cell.threads)
        env["TORCHINDUCTOR_CACHE_DIR"] = str(tmpdir / "inductor")  # no cache shared by cells
        env["TMPDIR"] = str(tmpdir)  # exported ONNX / IR files die with the cell
        estimate_path = tmpdir / "estimate.json"
        env[ESTIMATE_FILE_ENV] = str(estimate_path)  # the worker's memory estimate, written early
        with open(log_path, "w") as log:
            proc = None
            try:
                with stop.deferred():  # a stop now waits until the worker's id is known
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "segbench.worker", str(cell_path),
                         str(out_path)], stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                record = blank_record(cell)
                record.status, record.reason = "timeout", f"no result after {timeout:g} s"
                return record
            except BaseException:  # a stop (SIGTERM/SIGINT, stop.Stopped): the worker is in
                if proc is not None:  # a session of its own, out of the signal's reach
                    _kill_group(proc)
                raise  # before the temporary directory goes
        if out_path.exists():
            return Record.from_dict(json.loads(out_path.read_text()))
        record = blank_record(cell)
        record.status = "failed"
        detail = _last_line(log_path.read_text(errors="replace"))
        if code == -signal.SIGKILL:  # not ours (a timeout returned above): the OOM killer's
            record.reason = killed_reason(estimate_path)
            return record
        if code < 0:
            why = f"killed by signal {signal.Signals(-code).name}"
        else:
            why = f"worker exited with code {code}"
        record.reason = f"{why}{': ' + detail if detail else ''}"
        return record


IN_PROCESS_ENV = ("TORCHINDUCTOR_CACHE_DIR", "TMPDIR")


def run_here(cell: Cell) -> Record:
    """``cell`` in this process: how ``--quick`` runs its cells, as a smoke test of the code
    paths.

    A fresh process pays its imports before its cell starts (torch, timm, and torchvision's
    import of torch._dynamo: several seconds on 2 cores, most of a quick cell), and a quick run
    of every benchmark starts dozens of them. The price is isolation: cells share thread
    pools and compile caches, no per-cell timeout applies, and a crash ends the benchmark's
    run (run_all goes on with the next benchmark). Timings worth keeping come from full runs,
    which always isolate.
    """
    import torch

    from segbench.measure import time_call
    from segbench.worker import run_cell

    saved_env = {k: os.environ.get(k) for k in IN_PROCESS_ENV}
    saved_tmp, saved_threads = tempfile.tempdir, torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="segbench-cell-") as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        os.environ["TMPDIR"] = tempfile.tempdir = tmp  # exported files die with the cell
        try:
            record, elapsed = time_call(lambda: run_cell(cell))
            record.elapsed_s = elapsed
        except KeyboardInterrupt:  # a stop: this cell's helpers (inductor's compile workers)
            stop.end_children()  # go before the folder they write into
            raise
        except Exception as exc:  # noqa: BLE001 - run_cell makes rows of its failures; this
            record = blank_record(cell)  # catches what escapes it, so the run goes on
            record.status, record.reason = "failed", _last_line(f"{type(exc).__name__}: {exc}")
        finally:
            tempfile.tempdir = saved_tmp
            torch.set_num_threads(saved_threads)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return record


def killed_reason(estimate_path: Path) -> str:
    """Why a worker died of SIGKILL that we did not send: almost always the kernel's OOM killer.

    The worker writes its memory estimate before it allocates anything; quote it when present.
    """
    from segbench.footprint import gib

    try:
        noted = json.loads(estimate_path.read_text())
        need, have = noted["estimate_bytes"], noted["available_bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return "killed (likely out of memory: no estimate was made before the kill)"
    available = gib(have) if have else "unknown"
    return f"killed (likely out of memory: estimate {gib(need)}, available {available})"


def _kill_group(proc: subprocess.Popen) -> None:
    stop.end_group(proc)
