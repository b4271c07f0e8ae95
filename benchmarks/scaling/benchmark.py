"""Threads and streams: one slice at a time on every core, or several slices at once?

For a few representative 2D networks and runtimes, every latency-mode thread count (1 stream
of T threads, T = 1, 2, 4, ... up to the logical CPUs) and every throughput-mode split (S
streams of T threads, S x T = the logical CPUs, each stream its own runtime instance and its
own input). The table gives aggregate slices per second and per-slice latency and marks, per
network, the configuration with the highest throughput and the one with the lowest latency.
See docs/scaling.md.
"""

from segbench import machine, streams
from segbench.bench import Benchmark, main
from segbench.models import ModelSpec
from segbench.views.registry import VIEWS


def cpu_count(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_arguments(parser):
    parser.add_argument("--cpus", type=cpu_count, default=None,
                        help="logical CPUs the sweep may use (default: all of this machine's)")


def make_cells(bench, opts):
    cpus = opts.extra.get("cpus") or machine.logical_cpus()
    cells = []
    for name in opts.models:
        spec = ModelSpec("fpn", name, opts.classes)
        for runtime in opts.runtimes:
            for config in (streams.quick_configs if opts.quick else streams.configs)(cpus):
                cell = bench.cell(spec, runtime, opts, fidelity=False,
                                  extra={"streams": config.streams, "mode": config.mode,
                                         "tag": f"streams={config.streams}"})
                cell.threads = config.threads
                cells.append(cell)
    return cells


BENCHMARK = Benchmark(
    view=VIEWS["scaling"],
    families=["fpn"],
    models=["mobilenetv4_conv_small", "resnet18"],
    quick_models=["mobilenetv4_conv_small"],
    runtimes=["ort-fp32", "openvino-bf16", "eager"],
    quick_runtimes=["ort-fp32"],
    quick_size=128,
    add_arguments=add_arguments,
    cells=make_cells,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
