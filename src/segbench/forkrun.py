"""Run a script as ``__main__`` in a forked child of this process (``run_all.py --quick``).

A benchmark started as its own process spends ~15 s importing torch and timm before its first
cell; the quick smoke run of every benchmark would spend most of its budget on that. So the
quick run imports the shared modules once (:func:`preload`) and forks a child per benchmark
(:func:`run`), which runs the script exactly as ``python script args...`` would: ``sys.argv``,
``sys.path[0]``, the working directory and the signal handlers a fresh interpreter starts
with, its exit status from ``SystemExit`` or a traceback, and what interpreter exit does
(non-daemon threads joined, ``atexit`` handlers run: inductor's compile workers are shut down
there).

Forking after ``import torch`` is safe because nothing in the parent runs a torch operation:
the OpenMP intra-op pool (which does not survive a fork) starts at the first parallel op, so
each child starts its own. The parent's only threads are OpenBLAS pools (numpy's, scipy's),
which stop before a fork and restart in the child. Settings a library reads once when it is
loaded (``OMP_WAIT_POLICY`` by libgomp) are the parent's: set them before :func:`preload`.

The stop contract is ``subprocess``'s in ``run_all.run_benchmark``: a stop signal raised in
the parent (``stop.on_signals``) is passed on to the child, which gets 30 s to end its cell
and save; then it and everything below it are killed, and the stop is re-raised.
"""

from __future__ import annotations

import atexit
import importlib
import os
import runpy
import signal
import sys
import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Sequence

from segbench import stop

GRACE_S = 30  # what a stopped child gets to end its cell and save before it is killed


def preload(modules: Sequence[str]) -> list[str]:
    """Import ``modules`` here, once, for every child forked later. One that fails to import
    is left to the children (each reports it as its own failure); returns those."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken module fails the benchmarks that use it, not all
            print(f"forkrun: {name} not preloaded ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            failed.append(name)
    return failed


def run(argv: Sequence[str], cwd: Path | str) -> int:
    """Run the script ``argv[0]`` with arguments ``argv[1:]`` in a forked child, in ``cwd``;
    its exit code as ``Popen.wait`` gives it (``-N`` when killed by signal N)."""
    _flush()
    pid = 0
    try:
        with stop.deferred():  # a stop arriving now is raised once the child's id is known
            # the child takes signals once it has a fresh interpreter's handlers
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stop.SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:
                    _child(list(argv), cwd, blocked)  # never returns
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except KeyboardInterrupt as exc:
        if pid:
            _end(pid, getattr(exc, "signum", signal.SIGINT))
        raise


def _end(pid: int, signum: int) -> None:
    """Pass the stop on to the child, wait up to GRACE_S for it, then kill it and its
    descendants; reaps it."""
    try:
        os.kill(pid, signum)  # a repeat is ignored there
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    for p in stop.descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os.waitpid(pid, 0)


def _child(argv: list[str], cwd: Path | str, mask: set) -> None:
    code = 1
    try:
        stop.forget()  # the parent's handlers and stop state are not this process's
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        # objects the parent holds (a TemporaryDirectory) are the parent's to clean up
        for f in list(getattr(weakref.finalize, "_registry", {})):
            f.atexit = False
        os.chdir(cwd)
        sys.argv = argv
        sys.path[0] = str(Path(argv[0]).resolve().parent)  # as `python script` sets it
        code = _run_script(argv[0])
        threading._shutdown()  # what interpreter exit does: join non-daemon threads,
        atexit._run_exitfuncs()  # then the atexit handlers
    except BaseException:
        traceback.print_exc()
    finally:
        _flush()
        os._exit(code)


def _run_script(path: str) -> int:
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # sys.exit("message"), as the interpreter does
        return 1
    except KeyboardInterrupt as exc:
        traceback.print_exc()
        return stop.exit_code(exc)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
