"""The TotalSegmentator peer rows of the whole-CT benchmark (``--peers``).

The project's whole-CT cells are timed by the cell harness (one worker process per cell, the
protocol of measure.py). The peer is a different kind of thing, a whole command of minutes, so
it runs after the cells, on the same CT file, and its records join the same results file:

- ``add_arguments`` gives the benchmark ``--peers`` (refused in one line, exit 2, before any
  work when the peers group is not installed) and ``--peer-repeats``;
- ``main`` runs the benchmark's own cells as usual, then the peer rows;
- ``with_peer_tables`` adds the peer table (and the faithfulness ratios) to the benchmark's own
  tables.

Nothing here reads a clock: whole commands are timed by ``measure.time_whole_runs``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from segbench.peers import totalseg
from segbench.results import Record

OWN_FAST_METHOD = "totalseg-fast"  # the project's own --fast pipeline, as whole_ct names it
OWN_FAST_RUNTIME = "eager"
PEER_CELLS = (("fast", True), ("fast", False), ("fastest", True))
QUICK_PEER_CELLS = (("fast", True),)


class _PeersFlag(argparse.Action):
    """--peers: checked while the command line is parsed, so a missing group stops the run
    before the benchmark does anything."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None
                 ) -> None:
        totalseg.check_available()
        setattr(namespace, self.dest, True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", action=_PeersFlag, nargs=0, default=False,
                        help="also run the real TotalSegmentator (--fast --ml, --fast, "
                             "--fastest --ml) on the same CT, with planted random weights; "
                             f"needs '{totalseg.INSTALL_COMMAND}'")
    parser.add_argument("--peer-repeats", type=int, default=None, metavar="N",
                        help="runs of each peer command (default 2; 1 with --quick)")


def main(bench: Any, harness_main: Callable[..., int], argv: Sequence[str] | None = None
         ) -> int:
    """The benchmark's own run (``harness_main``, i.e. segbench.bench.main), then (with
    --peers) the peer rows into the same results file."""
    code = harness_main(bench, argv)
    if code != 0:
        return code
    opts = bench.parse(argv)
    if not opts.extra.get("peers") or opts.list or getattr(opts, "dry_run", False):
        return code
    from segbench import machine, stop
    from segbench.results import results_path

    try:
        with stop.on_signals():  # as the harness's own cells: the CLI's group ends with us
            return run_peer_rows(bench, opts)
    except KeyboardInterrupt as exc:
        return stop.stopped(exc, results_path(opts.out, bench.name, machine.slug(),
                                              opts.quick))


def run_peer_rows(bench: Any, opts: Any) -> int:
    """Run the peer commands on the run's CT and upsert their records (saved after each)."""
    from segbench import machine, stop
    from segbench.results import load_or_new, results_path, update

    repeats = opts.extra.get("peer_repeats") or (1 if opts.quick else 2)
    cells = QUICK_PEER_CELLS if opts.quick else PEER_CELLS
    path = results_path(opts.out, bench.name, machine.slug(), opts.quick)
    results = load_or_new(path, bench.name, machine.capture())
    with tempfile.TemporaryDirectory(prefix="segbench-totalseg-") as tmp:
        work = Path(tmp)
        ct_path, shape = ct_file(opts, work)
        for i, (mode, ml) in enumerate(cells, 1):
            print(f"[peer {i}/{len(cells)}] {totalseg.label(mode, ml)} x{repeats} ...",
                  file=sys.stderr, end="", flush=True)
            record = totalseg.run_peer(ct_path, mode, ml, work, repeats=repeats, shape=shape,
                                       quick=opts.quick, benchmark=bench.name)
            stamp(record)
            what = (f"{record.timing['median_s']:.1f} s per CT" if record.ok and record.timing
                    else record.reason)
            print(f" {record.status}: {what}", file=sys.stderr, flush=True)
            with stop.deferred():  # a stop waits until this finished row is saved
                results.upsert(record)
                update(path, results, [record])  # merged under the file's lock
    own = own_fast_record(results.records)
    peer = next((r for r in results.records if r.key == peer_key("fast", True)), None)
    if own is not None and peer is not None:
        ratios = faithfulness_of(own, peer)
        peer.extra["faithfulness"] = ratios
        results.upsert(peer)
        update(path, results, [peer])
    print("\n\n".join(f"**{t}**\n\n{md}" for t, md in peer_tables(results.records)))
    return 0


def stamp(record: Record) -> None:
    """Commit and date, as the worker stamps the project's own records."""
    import datetime as dt

    from segbench import machine

    record.commit = machine.git_commit()
    record.date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def ct_file(opts: Any, work: Path) -> tuple[Path, list[int]]:
    """The NIfTI file the tool reads: the user's own --input as given, else the run's phantom
    CT (the very volume the project's pipelines read) written to ``work``."""
    from segbench import wholect, wholect_bench

    source = wholect_bench.ct_source(opts)
    if source["kind"] == "nifti":
        ct = wholect.read_nifti(source["path"])
        return Path(source["path"]), list(ct.hu.shape)
    ct = wholect.load_ct(source)
    path = totalseg.write_ct(ct.hu, ct.spacing, work / "ct.nii.gz")
    return path, list(ct.hu.shape)


def peer_key(mode: str, ml: bool) -> str:
    """A peer record's key; ``("fast", True)`` is wholect_bench.PEER_FAST_KEY, the record the
    per-CT table's "vs the real tool" ratio divides by."""
    return f"peer:totalsegmentator:{mode}{':ml' if ml else ''}"


# --------------------------------------------------------------------------------------------
# Faithfulness and tables


def own_fast_record(records: Sequence[Record]) -> Record | None:
    """The project's own eager --fast pipeline of the same file, if it ran and succeeded."""
    return next((r for r in records if r.extra.get("method") == OWN_FAST_METHOD
                 and r.runtime == OWN_FAST_RUNTIME and r.ok and r.timing), None)


def own_seconds(own: Record) -> tuple[float, float]:
    """(network passes + their accumulation, whole pipeline) of one own loop. nnU-Net's
    progress bar covers both the passes and the weighted accumulation of every tile, so the
    network side of the comparison is the own loop's predict + accumulate stages."""
    stages = own.extra.get("stages_s", {})
    network = float(stages.get("predict", 0.0)) + float(stages.get("accumulate", 0.0))
    whole = 1.0 / own.timing["throughput"]  # loops per second -> seconds per CT
    return network, whole


def faithfulness_of(own: Record, peer: Record) -> dict[str, Any]:
    network, whole = own_seconds(own)
    out = totalseg.faithfulness(network, whole, peer)
    out["own"] = own.key
    return out


PEER_HEADERS = ["peer (random weights, speed only)", "s per CT (runs)", "spread",
                "resample / predict / back / save / outside s", "sliding window s (tiles)",
                "peak memory GB (PSS / RSS)", "max threads (procs)", "status"]


def peer_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if r.family != "peer":
            continue
        label = r.extra.get("display", r.model)
        if not r.ok or not r.timing:
            rows.append([label, "", "", "", "", "", "", f"{r.status}: {r.reason}"])
            continue
        t, parts = r.timing, r.parts
        stages = " / ".join(f"{parts[n]['seconds']:.1f}" if n in parts else "?"
                            for n in ("resample", "predict", "resample_back", "save",
                                      "outside_stages"))
        window = parts.get("sliding_window", {})
        info = r.runtime_info
        runs = ", ".join(f"{s:.0f}" for s in t["runs_s"])
        rows.append([
            label + (" (quick)" if r.quick else ""), f"{t['median_s']:.1f} ({runs})",
            f"{t['spread']:.0%}" + (" noisy" if t.get("noisy") else ""),
            stages,
            f"{window['seconds']:.0f} ({window.get('tiles', '?')})" if window else "?",
            f"{r.memory.get('peak_pss_tree_mb', 0) / 1024:.1f} / "
            f"{r.memory.get('peak_rss_tree_mb', 0) / 1024:.1f}",
            f"{info.get('max_threads', '?')} ({info.get('max_processes', '?')})",
            "ok"])
    return rows


FAITH_HEADERS = ["own --fast eager vs the tool --fast --ml", "own s", "tool s", "own / tool"]


def faithfulness_rows(records: Sequence[Record]) -> list[list[str]]:
    peer = next((r for r in records if r.key == peer_key("fast", True)), None)
    ratios = (peer.extra.get("faithfulness") if peer else None) or {}
    if ratios.get("status") != "ok":
        return []

    def fmt(v: float | None, spec: str = ".1f") -> str:
        return "?" if v is None else format(v, spec)

    return [
        ["network passes + accumulation vs its sliding window", fmt(ratios["own_network_s"]),
         fmt(ratios["tool_sliding_window_s"]), fmt(ratios["network_ratio"], ".2f")],
        ["whole pipeline vs whole command", fmt(ratios["own_pipeline_s"]),
         fmt(ratios["tool_whole_s"]), fmt(ratios["pipeline_ratio"], ".2f")],
    ]


def peer_tables(records: Sequence[Record]) -> list[tuple[str, str]]:
    from tabulate import tabulate

    rows = peer_rows(records)
    if not rows:
        return []
    out = [("The real TotalSegmentator, as shipped, on the same CT (weights planted at random: "
            "speed only)", tabulate(rows, headers=PEER_HEADERS, tablefmt="github",
                                    disable_numparse=True))]
    faith = faithfulness_rows(records)
    if faith:
        out.append(("Faithfulness of the project's own --fast pipeline to the tool (measured "
                    "in the same run)", tabulate(faith, headers=FAITH_HEADERS,
                                                 tablefmt="github", disable_numparse=True)))
    return out


def with_peer_tables(tables: Callable[[Any, Any], list[tuple[str, str]]]
                     ) -> Callable[[Any, Any], list[tuple[str, str]]]:
    """The benchmark's own tables followed by the peer tables (none when no peer ran)."""
    def combined(bench: Any, results: Any) -> list[tuple[str, str]]:
        return tables(bench, results) + peer_tables(results.records)

    return combined
