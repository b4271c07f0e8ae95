"""Latency mode versus throughput mode: one call with many threads, or many streams of few.

A CT is hundreds of independent slices. On a CPU with many cores they can go through one
runtime instance that uses every core for each slice (latency mode: the time of one slice is
as short as it gets), or through S independent instances of T threads each, S x T <= the
logical CPUs, each working on its own slices (throughput mode: small networks rarely keep 32
threads busy, so S narrow streams usually finish a volume sooner). This module plans which
(streams, threads) configurations a machine gets and runs a cell as S streams; the timing
itself is :func:`segbench.measure.measure_concurrent`.

Every runtime gets the same treatment: S separate ``prepare`` calls (S ONNX Runtime sessions,
S compiled OpenVINO models, S torch modules), each with T threads and its own input, called
from S Python threads. ONNX Runtime and OpenVINO release the GIL while they infer; PyTorch
releases it inside its kernels, and each calling thread gets its own T-thread OpenMP team.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from segbench.measure import Protocol, Timing, measure_concurrent, time_call
from segbench.models import INPUT_SEED, make_input


@dataclass(frozen=True)
class Config:
    """S streams of T threads each."""

    streams: int
    threads: int

    @property
    def mode(self) -> str:
        return "latency" if self.streams == 1 else "throughput"

    @property
    def total_threads(self) -> int:
        return self.streams * self.threads

    @property
    def label(self) -> str:
        return f"{self.streams}x{self.threads}"


def powers_of_two(limit: int) -> list[int]:
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return out


def thread_counts(logical: int) -> list[int]:
    """Latency-mode sweep: powers of two up to the logical CPUs, plus the logical count itself
    (1, 2 on a 2-CPU machine; 1, 2, 4, ..., 64 on 64; 1, 2, 4, 8, 12 on 12)."""
    if logical < 1:
        raise ValueError(f"need at least one CPU, got {logical}")
    return sorted(set(powers_of_two(logical)) | {logical})


def configs(logical: int) -> list[Config]:
    """Every latency-mode thread count, then throughput mode: for each power-of-two T that
    leaves room for two streams, as many T-thread streams as fit (S = logical // T)."""
    latency = [Config(1, t) for t in thread_counts(logical)]
    throughput = [Config(logical // t, t) for t in powers_of_two(logical // 2)]
    return latency + throughput


def quick_configs(logical: int) -> list[Config]:
    """For --quick: the two ends only, every core on one slice and one core per stream."""
    ends = [Config(1, logical)] + ([Config(logical, 1)] if logical > 1 else [])
    return ends


def stream_inputs(shape: Sequence[int], streams: int) -> list[torch.Tensor]:
    """One fixed input per stream, each from its own seed: no two streams read the same
    memory, as independent slices of a CT would not."""
    return [make_input(tuple(shape), seed=INPUT_SEED + s) for s in range(streams)]


def stream_calls(calls: Sequence[Any], inputs: Sequence[torch.Tensor]) -> list[Any]:
    """Zero-argument closures: stream s runs ``calls[s]`` on ``inputs[s]``."""
    if len(calls) != len(inputs):
        raise ValueError(f"{len(calls)} runtime instances for {len(inputs)} inputs")
    return [(lambda call=call, x=x: call(x)) for call, x in zip(calls, inputs)]


def prepare_and_measure(runtime: Any, module: Any, example: torch.Tensor, threads: int,
                        streams: int, options: dict[str, Any], protocol: Protocol,
                        batch: int, want_output: bool) -> tuple[dict[str, Any], Any]:
    """Prepare ``streams`` instances of ``module`` with ``threads`` threads each (prepare time
    is their sum), time them running at once, clean up. Returns the same dictionary as a
    one-stream cell (prepare_s, info of the first instance, timing, evaluation) and, when
    asked, the first instance's output on ``example`` for fidelity."""
    from segbench.runtimes import accepted, to_numpy

    # instances side by side must not pin their threads to the same cores
    options = {**options, **accepted(runtime.name, {"cpu_pinning": False})}
    prepared: list[Any] = []
    prepare_s = 0.0
    try:
        for _ in range(streams):
            instance, seconds = time_call(
                lambda: runtime.prepare(module, example, threads, **options))
            prepared.append(instance)
            prepare_s += seconds
        inputs = stream_inputs(example.shape, streams)
        timing: Timing = measure_concurrent(stream_calls([p.call for p in prepared], inputs),
                                            protocol, batch=batch)
        output = to_numpy(prepared[0].call(example)) if want_output else None
    finally:
        for instance in prepared:
            if instance.cleanup:
                instance.cleanup()
    info = {**prepared[0].info, "streams": streams, "threads_per_stream": threads}
    return {"prepare_s": prepare_s, "info": info, "timing": timing.to_dict(),
            "evaluation": {}}, output


# The table -------------------------------------------------------------------------------------

def config_of(record: Any) -> Config:
    return Config(int(record.extra.get("streams", 1)), int(record.threads))


def network_key(record: Any) -> str:
    return f"{record.family}|{record.model}|{'x'.join(map(str, record.shape[1:]))}"


def best_keys(records: Sequence[Any]) -> tuple[set[str], set[str]]:
    """Keys of each network's highest-throughput row and of its lowest-latency (p50) row,
    over every runtime and configuration."""
    fastest: dict[str, Any] = {}
    quickest: dict[str, Any] = {}
    for r in records:
        if not (r.ok and r.timing):
            continue
        net = network_key(r)
        if net not in fastest or r.throughput > fastest[net].throughput:
            fastest[net] = r
        p50 = r.timing["latency_p50_ms"]
        if net not in quickest or p50 < quickest[net].timing["latency_p50_ms"]:
            quickest[net] = r
    return {r.key for r in fastest.values()}, {r.key for r in quickest.values()}


def one_thread_throughput(records: Sequence[Any]) -> dict[tuple[str, str], float]:
    """(network, runtime) -> slices/s of one stream of one thread, the scaling baseline."""
    return {(network_key(r), r.runtime): r.throughput for r in records
            if r.ok and r.throughput and config_of(r) == Config(1, 1)}


def scaling_table(records: Sequence[Any]) -> str:
    """One row per network x runtime x configuration, grouped by network; the best throughput
    and the lowest latency of each network are marked."""
    from tabulate import tabulate

    from segbench.report import DASH, num, status_text, throughput_text

    fastest, quickest = best_keys(records)
    base = one_thread_throughput(records)
    order = {net: i for i, net in enumerate(dict.fromkeys(network_key(r) for r in records))}
    rows = []
    for r in sorted(records, key=lambda r: (order[network_key(r)], r.runtime,
                                            config_of(r).mode != "latency",
                                            config_of(r).total_threads, config_of(r).threads)):
        cfg = config_of(r)
        marks = [m for m, keys in (("**best throughput**", fastest),
                                   ("**lowest latency**", quickest)) if r.key in keys]
        one = base.get((network_key(r), r.runtime))
        timing = r.timing or {}
        rows.append([r.extra.get("display", r.model), r.runtime, cfg.mode,
                     f"{cfg.streams} x {cfg.threads}",
                     throughput_text(r.timing) if r.ok else DASH,
                     num(r.throughput / one, 2) if r.ok and r.throughput and one else DASH,
                     f"{num(timing.get('latency_p50_ms'))} / {num(timing.get('latency_p99_ms'))}"
                     if r.ok else DASH,
                     ", ".join(marks), status_text(r)])
    return tabulate(rows, headers=["network", "runtime", "mode", "streams x threads",
                                   "slices/s (median ± IQR)", "x vs 1 thread",
                                   "latency p50 / p99 per slice (ms)", "best", "status"],
                    tablefmt="github", disable_numparse=True)
