"""Stopping a run cleanly: SIGTERM (what batch schedulers and container runtimes send) and
SIGINT (Ctrl-C).

Python's default SIGTERM ends the process at once: no ``finally`` runs, so the cell worker
(started in a session of its own, out of reach of signals sent to the run's process group)
kept computing with no parent and its temporary directory stayed behind. Inside
:func:`on_signals` both signals instead raise :class:`Stopped` (a ``KeyboardInterrupt``, so no
``except Exception`` that turns a failing model into a row can swallow it) in the main thread.
The code that started a process ends its whole process group on the way out
(:func:`end_group`), ``TemporaryDirectory`` blocks remove their folders, and the benchmark's
``main`` ends whatever else it started (:func:`end_children`: e.g. inductor's compile workers
of an in-process ``--quick`` cell), prints one line saying where the finished records are and
returns 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + signal number.

Only the first signal raises; later ones (a second Ctrl-C, a scheduler's repeated SIGTERM)
are ignored while that cleanup runs, which takes well under a second. A signal arriving while
a finished cell's record is being saved waits for the save (:func:`deferred`), so a finished
cell is never lost to a stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_state: dict[str, Any] = {"depth": 0, "deferring": 0, "pending": None, "raised": False}


def _handler(signum: int, frame: Any) -> None:
    if _state["raised"]:
        return  # the first stop's cleanup is under way
    if _state["deferring"]:
        _state["pending"] = _state["pending"] or signum
        return
    _state["raised"] = True
    raise Stopped(signum)


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped` in the main thread (only
    the first one). Outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        if not _state["depth"]:
            _state.update(deferring=0, pending=None, raised=False)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal arriving within the block is raised when the block ends (saving a
    finished record, starting a process whose id must be known before it can be ended)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        signum = _state["pending"]
        if not _state["deferring"] and signum and not _state["raised"]:
            _state.update(pending=None, raised=True)
            raise Stopped(signum)


def forget() -> None:
    """In a forked child (``forkrun``): drop the parent's stop state and give SIGTERM and
    SIGINT the handlers a fresh interpreter starts with; the script run there sets its own."""
    _state.update(depth=0, deferring=0, pending=None, raised=False)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_code(exc: BaseException) -> int:
    """130 for SIGINT (a plain KeyboardInterrupt included), 143 for SIGTERM."""
    return exc.exit_code if isinstance(exc, Stopped) else 128 + signal.SIGINT


def stopped(exc: BaseException, path: Path | str) -> int:
    """After a stop: end every process this one started, say in one line where the finished
    records are kept, and return the exit code."""
    end_children()
    name = signal.Signals(exc.signum).name if isinstance(exc, Stopped) else "SIGINT"
    print(f"\nstopped by {name}; finished cells are kept in {path}", file=sys.stderr,
          flush=True)
    return exit_code(exc)


# --------------------------------------------------------------------------------------------
# Processes


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from the parent ids in /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (``proc`` was started with ``start_new_session``, so it
    leads one: the cell worker with its compile workers, the peer CLI with nnU-Net's
    processes) and any descendant that left the group, then reap ``proc``."""
    below = descendants(proc.pid)[1:]
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in below:
        _kill(pid)
    proc.wait()


def end_children() -> None:
    """SIGKILL every process below this one (what a stopped run leaves: compile workers of an
    in-process cell, a worker whose group is already gone). Orphans get no second chance:
    after a stop nothing of the run may keep computing beside the next one."""
    for pid in descendants(os.getpid())[1:]:
        _kill(pid)
