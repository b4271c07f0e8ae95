"""The timing protocol. Nothing else in the project reads a clock to produce a result.

Why each rule exists is written up in docs/methodology.md; in short:
- the first call (torch.compile, ORT/OpenVINO lazy init) is timed on its own and never mixed
  into throughput;
- warm-up runs until both a call count and a wall time are reached, so caches, allocators and
  CPU frequency settle before anything is recorded;
- the timed part is R repeats, each long enough (time and calls) to average out timer
  resolution; throughput is the median over repeats with its IQR, latency percentiles are over
  every single call, and a record whose IQR/median exceeds 10 % is flagged ``noisy``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

NOISY_IQR_RATIO = 0.10
# Other work on the machine during a timing: above a quarter of a core (busy CPU time of other
# processes plus hypervisor steal, per second of timing) the row is flagged ``contended``.
CONTENDED_CORES = 0.25

Clock = Callable[[], float]


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds at one instant: busy time of the whole machine, steal, and this process."""

    wall: float
    machine_busy: float
    steal: float
    own: float


def cpu_sample(stat: Path = Path("/proc/stat")) -> CpuSample | None:
    """Machine-wide busy and steal CPU seconds (first line of /proc/stat) and this process's
    user + system time (all its threads); None where /proc/stat cannot be read."""
    try:
        fields_ = stat.read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields_] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    busy = (user + nice + system + irq + softirq) / hz
    return CpuSample(wall=time.monotonic(), machine_busy=busy, steal=steal / hz,
                     own=own.user + own.system)


def contention(before: CpuSample | None, after: CpuSample | None) -> dict[str, Any] | None:
    """Cores' worth of other work between two samples: busy CPU time not spent by this process,
    plus steal, divided by the wall time; ``contended`` above :data:`CONTENDED_CORES`."""
    if before is None or after is None or after.wall <= before.wall:
        return None
    wall = after.wall - before.wall
    others = max(0.0, (after.machine_busy - before.machine_busy) - (after.own - before.own))
    steal = max(0.0, after.steal - before.steal)
    cores = (others + steal) / wall
    return {"other_cores": others / wall, "steal_cores": steal / wall, "seconds": wall,
            "threshold_cores": CONTENDED_CORES, "contended": bool(cores > CONTENDED_CORES)}


@dataclass(frozen=True)
class Protocol:
    """How long and how often a cell is timed."""

    warmup_calls: int = 3
    warmup_seconds: float = 0.5
    repeats: int = 5
    repeat_seconds: float = 1.0
    repeat_calls: int = 5
    quick: bool = False

    @classmethod
    def full(cls, repeats: int = 5) -> "Protocol":
        return cls(repeats=repeats)

    @classmethod
    def slow_passes(cls, repeats: int = 3) -> "Protocol":
        """For passes of several seconds (3D patches): 1 s minimums are met by every call, so
        fewer calls per repeat lose nothing to timer resolution and keep a cell in minutes."""
        return cls(warmup_calls=2, repeats=repeats, repeat_calls=3)

    @classmethod
    def smoke(cls, repeats: int = 2) -> "Protocol":
        """For --quick: enough to exercise every code path, not to publish."""
        return cls(warmup_calls=1, warmup_seconds=0.0, repeats=repeats,
                   repeat_seconds=0.2, repeat_calls=2, quick=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timing:
    """What one timed cell produced; everything a table needs about speed."""

    first_call_s: float
    batch: int
    repeat_throughputs: list[float]  # items per second, one per repeat
    latencies_ms: list[float]  # every timed call
    warmup_calls: int
    stats: dict[str, float] = field(default_factory=dict)
    contention: dict[str, Any] | None = None  # other work during the timed repeats

    def __post_init__(self) -> None:
        if not self.stats:
            self.stats = summarize(self.repeat_throughputs, self.latencies_ms)

    @property
    def noisy(self) -> bool:
        return bool(self.stats["iqr_ratio"] > NOISY_IQR_RATIO)

    @property
    def contended(self) -> bool:
        return bool(self.contention and self.contention["contended"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_call_s": self.first_call_s,
            "batch": self.batch,
            "warmup_calls": self.warmup_calls,
            "repeat_throughputs": self.repeat_throughputs,
            "calls": len(self.latencies_ms),
            **self.stats,
            "noisy": self.noisy,
            "contention": self.contention,
            "contended": self.contended,
        }


def summarize(repeat_throughputs: list[float], latencies_ms: list[float]) -> dict[str, float]:
    """Median throughput over repeats with its IQR; latency percentiles over all calls."""
    if not repeat_throughputs or not latencies_ms:
        raise ValueError("cannot summarise an empty measurement")
    tp = np.asarray(repeat_throughputs, dtype=float)
    lat = np.asarray(latencies_ms, dtype=float)
    q25, median, q75 = np.percentile(tp, [25, 50, 75])
    iqr = float(q75 - q25)
    return {
        "throughput": float(median),
        "throughput_iqr": iqr,
        "iqr_ratio": iqr / float(median) if median > 0 else float("inf"),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p90_ms": float(np.percentile(lat, 90)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "latency_mean_ms": float(lat.mean()),
    }


def time_call(call: Callable[[], Any], clock: Clock = time.perf_counter) -> tuple[Any, float]:
    """One call and its wall time in seconds."""
    start = clock()
    out = call()
    return out, clock() - start


def measure(call: Callable[[], Any], protocol: Protocol, batch: int = 1,
            clock: Clock = time.perf_counter,
            probe: Callable[[], CpuSample | None] = cpu_sample) -> Timing:
    """Time ``call`` (a zero-argument closure over an input made beforehand) by the protocol.

    ``batch`` converts calls per second into items per second. ``probe`` samples the machine's
    CPU time around the timed repeats, so that other work running meanwhile is recorded and the
    row flagged ``contended`` instead of silently kept.
    """
    _, first_call_s = time_call(call, clock)

    warm_calls = 0
    warm_start = clock()
    while warm_calls < protocol.warmup_calls or clock() - warm_start < protocol.warmup_seconds:
        call()
        warm_calls += 1

    throughputs: list[float] = []
    latencies_ms: list[float] = []
    before = probe()
    for _ in range(protocol.repeats):
        calls = 0
        repeat_start = clock()
        elapsed = 0.0
        while calls < protocol.repeat_calls or elapsed < protocol.repeat_seconds:
            _, dt = time_call(call, clock)
            latencies_ms.append(dt * 1e3)
            calls += 1
            elapsed = clock() - repeat_start
        throughputs.append(calls * batch / elapsed)

    return Timing(first_call_s=first_call_s, batch=batch, repeat_throughputs=throughputs,
                  latencies_ms=latencies_ms, warmup_calls=warm_calls,
                  contention=contention(before, probe()))


def measure_concurrent(calls: "list[Callable[[], Any]]", protocol: Protocol, batch: int = 1,
                       clock: Clock = time.perf_counter,
                       probe: Callable[[], CpuSample | None] = cpu_sample) -> Timing:
    """Time S zero-argument closures running at once, one Python thread each (throughput mode:
    S parallel streams, each with its own input and its own runtime instance).

    Each stream follows the protocol on its own: a timed first call, warm-up, then R repeats.
    Repeats start together (a barrier) and a stream's repeat ends when it has met the minimum
    calls and seconds; it then keeps calling, uncounted, until every stream has met its minimum,
    so every counted call ran while all the other streams were busy. A repeat's throughput is
    the sum of the streams' rates; latencies are every counted call of every stream. The first
    call reported is the slowest stream's. ``clock`` is read from the stream threads;
    ``probe`` samples other work on the machine around the whole run, as in :func:`measure`.
    """
    import threading

    streams = len(calls)
    if streams < 1:
        raise ValueError("measure_concurrent needs at least one callable")
    barrier = threading.Barrier(streams)
    rates = [[0.0] * protocol.repeats for _ in range(streams)]
    latencies: list[list[float]] = [[] for _ in range(streams)]
    first = [0.0] * streams
    warm = [0] * streams
    errors: list[BaseException] = []
    lock = threading.Lock()
    finished = [0] * protocol.repeats
    all_met = [threading.Event() for _ in range(protocol.repeats)]

    def stream(s: int) -> None:
        call = calls[s]
        try:
            _, first[s] = time_call(call, clock)
            warm_start = clock()
            while warm[s] < protocol.warmup_calls or clock() - warm_start < protocol.warmup_seconds:
                call()
                warm[s] += 1
            for r in range(protocol.repeats):
                barrier.wait()
                count, elapsed, start = 0, 0.0, clock()
                while count < protocol.repeat_calls or elapsed < protocol.repeat_seconds:
                    _, dt = time_call(call, clock)
                    latencies[s].append(dt * 1e3)
                    count += 1
                    elapsed = clock() - start
                rates[s][r] = count * batch / elapsed
                with lock:
                    finished[r] += 1
                    if finished[r] == streams:
                        all_met[r].set()
                while not all_met[r].is_set():  # keep the load on for the slower streams
                    call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)
            barrier.abort()
            for event in all_met:
                event.set()

    threads = [threading.Thread(target=stream, args=(s,), daemon=True) for s in range(streams)]
    before = probe()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return Timing(first_call_s=max(first), batch=batch,
                  repeat_throughputs=[sum(rates[s][r] for s in range(streams))
                                      for r in range(protocol.repeats)],
                  latencies_ms=[ms for per in latencies for ms in per],
                  warmup_calls=min(warm), contention=contention(before, probe()))


class StageClock:
    """Wall time per named stage of one pipeline run (resample, predict, argmax...).

    Pipelines wrap each stage in ``with clock.stage(name):``; repeated stages (one per tile or
    per batch) add up. The stages of a timed loop sum to a little less than the loop's own
    time: what runs between stages is not attributed.
    """

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self.seconds: dict[str, float] = {}

    def stage(self, name: str) -> Any:
        import contextlib

        @contextlib.contextmanager
        def timed() -> Any:
            start = self._clock()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + self._clock() - start

        return timed()


@dataclass
class WholeRuns:
    """Wall times of a whole program run several times, as its users run it (a CLI command of
    minutes: no warm-up loop, every run is a fresh process, each run is one number).

    ``spread`` is (max - min) / median over the runs; above :data:`NOISY_IQR_RATIO` the runs
    are flagged ``noisy`` like a cell whose repeats disagree.
    """

    seconds: list[float]
    results: list[Any] = field(default_factory=list)  # what each run returned; not serialised

    def to_dict(self) -> dict[str, Any]:
        s = np.asarray(self.seconds, dtype=float)
        median = float(np.median(s))
        spread = float(s.max() - s.min()) / median if median > 0 else float("inf")
        return {"runs_s": [float(v) for v in s], "repeats": len(s), "median_s": median,
                "min_s": float(s.min()), "max_s": float(s.max()), "spread": spread,
                "noisy": bool(spread > NOISY_IQR_RATIO)}


def time_whole_runs(run: Callable[[int], Any], repeats: int,
                    clock: Clock = time.perf_counter) -> WholeRuns:
    """Call ``run(i)`` for i in 0..repeats-1 (it starts and waits for one whole command) and
    time each call; its return values are kept beside the seconds."""
    if repeats < 1:
        raise ValueError("time_whole_runs needs at least one repeat")
    seconds: list[float] = []
    results: list[Any] = []
    for i in range(repeats):
        out, dt = time_call(lambda i=i: run(i), clock)
        seconds.append(dt)
        results.append(out)
    return WholeRuns(seconds=seconds, results=results)


class CpuBudget:
    """A training budget in CPU seconds of this process (all its threads together).

    Wall time would give a network less training whenever other work shares the machine; CPU
    time used is what a budget of "N core-minutes" means and stays fair between networks
    trained at different moments of a noisy machine. ``fraction`` is how much is spent.
    """

    def __init__(self, seconds: float, clock: Clock = time.process_time) -> None:
        if seconds <= 0:
            raise ValueError(f"a budget must be positive, got {seconds} s")
        self.seconds = float(seconds)
        self._clock = clock
        self._start = clock()

    @property
    def used(self) -> float:
        return self._clock() - self._start

    @property
    def fraction(self) -> float:
        return min(1.0, self.used / self.seconds)

    @property
    def spent(self) -> bool:
        return self.used >= self.seconds
