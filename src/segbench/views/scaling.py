"""The scaling benchmark's table: threads x streams per network and runtime, the best
throughput and the lowest latency of each network marked (:mod:`segbench.streams` runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from segbench import fields
from segbench.results import ResultsFile


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


def config_of(record: Any) -> Config:
    return Config(int(record.extra.get(fields.STREAMS, 1)), int(record.threads))


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

    from segbench.tables import DASH, num, status_text, throughput_text

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
        rows.append([fields.display(r), r.runtime, cfg.mode,
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


def scaling_tables(view: Any, results: ResultsFile) -> list[tuple[str, str]]:
    return [("", scaling_table(results.records))]


def scaling_plots(results: ResultsFile, out: Path) -> list[Path | None]:
    from segbench import machine, plots

    return [plots.scaling_plot(results.records, out / "scaling.png",
                               machine=machine.describe(results.machine))]
