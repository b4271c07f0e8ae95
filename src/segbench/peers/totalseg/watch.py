"""Running and watching one command: started in its own session, its process tree sampled from
/proc for peak memory, threads and processes, the whole group killed at the timeout or on a
stop, its log and outputs collected."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from segbench import stop
from segbench.stop import descendants


@dataclass
class TreeWatch:
    """Peak memory and threads of a process and its descendants, sampled from /proc."""

    root: int
    interval_s: float = 0.25  # a sample costs a few ms of CPU: about 1 % of a core
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0  # shared pages (torch's libraries in every worker) counted once
    max_threads: int = 0
    max_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "TreeWatch":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        rss_kb, pss_kb, threads, procs = 0, 0, 0, 0
        for pid in descendants(self.root):
            status = _status(pid)
            if status is None:
                continue
            procs += 1
            rss_kb += status.get("VmRSS", 0)
            pss_kb += status.get("Pss", 0)
            threads += status.get("Threads", 0)
        self.peak_rss_mb = max(self.peak_rss_mb, rss_kb / 1024)
        self.peak_pss_mb = max(self.peak_pss_mb, pss_kb / 1024)
        self.max_threads = max(self.max_threads, threads)
        self.max_processes = max(self.max_processes, procs)


def _status(pid: int) -> dict[str, int] | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
                break
    except OSError:
        pass
    return out


@dataclass
class CommandRun:
    """One run of the command: how it ended, what it printed, what it held."""

    returncode: int | None  # None: killed at the timeout
    log: str
    peak_rss_tree_mb: float
    peak_pss_tree_mb: float
    peak_rss_largest_mb: float
    max_threads: int
    max_processes: int
    outputs: int  # files written under the output path
    output_bytes: int


def run_command(cmd: list[str], env: dict[str, str], log_path: Path, out: Path,
                timeout_s: float) -> CommandRun:
    """Start ``cmd`` in its own session, watch its process tree, wait for it (killing the
    whole group at the timeout) and collect its log and outputs."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=env["TMPDIR"])
        watch = TreeWatch(proc.pid).start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # a stop (stop.Stopped): the command is in a session of its
            stop.end_group(proc)  # own, with nnU-Net's processes; none of it may outlive us
            raise
        finally:
            timer.cancel()
            watch.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else (
        [out] if out.exists() else [])
    return CommandRun(returncode=None if timed_out.is_set() else proc.returncode,
                      log=Path(log_path).read_text(errors="replace"),
                      peak_rss_tree_mb=watch.peak_rss_mb, peak_pss_tree_mb=watch.peak_pss_mb,
                      peak_rss_largest_mb=usage.ru_maxrss / 1024,  # kB on Linux
                      max_threads=watch.max_threads, max_processes=watch.max_processes,
                      outputs=len(files), output_bytes=sum(p.stat().st_size for p in files))
