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

from typing import Any, Sequence

import torch

from segbench.measure import Protocol, Timing, measure_concurrent, time_call
from segbench.models import INPUT_SEED, make_input
from segbench.views.scaling import Config


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
