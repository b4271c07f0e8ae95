"""The TotalSegmentator peer rows of the whole-CT benchmark (``--peers``).

The project's whole-CT cells are timed by the cell harness (one worker process per cell, the
protocol of measure.py). The peer is a different kind of thing, a whole command of minutes, so
it runs after the cells, on the same CT file, and its records join the same results file:

- ``add_arguments`` gives the benchmark ``--peers`` (refused in one line, exit 2, before any
  work when the peers group is not installed) and ``--peer-repeats``;
- ``rows`` is the benchmark's ``extra_rows``: after the cells, the harness saves each peer
  record into the run's results file as it saves a cell's (one writer per file);
- the peer tables (and the faithfulness ratios) are the whole_ct view's
  (:mod:`segbench.benchmarks.whole_ct.view`).

Nothing here reads a clock: whole commands are timed by ``measure.time_whole_runs``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from segbench import fields
from segbench.peers.totalseg import install, launch, runner
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
        install.check_available()
        setattr(namespace, self.dest, True)


def add_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--peers``, refused at parse time when the peers group is missing."""
    parser.add_argument("--peers", action=_PeersFlag, nargs=0, default=False,
                        help=f"{what}; needs '{install.INSTALL_COMMAND}'")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "also run the real TotalSegmentator (--fast --ml, --fast, --fastest "
                     "--ml) on the same CT, with planted random weights")
    parser.add_argument("--peer-repeats", type=int, default=None, metavar="N",
                        help="runs of each peer command (default 2; 1 with --quick)")


def rows(bench: Any, opts: Any, results: Any,
         cells: Sequence[tuple[str, bool]] | None = None) -> Iterator[Record]:
    """The peer records of a run with ``--peers`` (``Benchmark.extra_rows``: the harness saves
    each into the run's results file as it saves a cell's), on the run's CT; then the --fast
    --ml row again with its faithfulness to the own --fast pipeline of the same file.
    ``cells``: the (mode, --ml) commands to run (default: three, one with --quick)."""
    if not opts.extra.get("peers"):
        return
    repeats = opts.extra.get("peer_repeats") or (1 if opts.quick else 2)
    cells = cells or (QUICK_PEER_CELLS if opts.quick else PEER_CELLS)
    with tempfile.TemporaryDirectory(prefix="segbench-totalseg-") as tmp:
        work = Path(tmp)
        ct_path, shape = ct_file(opts, work)
        for i, (mode, ml) in enumerate(cells, 1):
            print(f"[peer {i}/{len(cells)}] {install.label(mode, ml)} x{repeats} ...",
                  file=sys.stderr, end="", flush=True)
            record = runner.run_peer(ct_path, mode, ml, work, repeats=repeats, shape=shape,
                                     quick=opts.quick, benchmark=bench.name)
            stamp(record)
            what = (f"{record.timing['median_s']:.1f} s per CT" if record.ok and record.timing
                    else record.reason)
            print(f" {record.status}: {what}", file=sys.stderr, flush=True)
            yield record
    own = own_fast_record(results.records)
    peer = next((r for r in results.records if r.key == peer_key("fast", True)), None)
    if own is not None and peer is not None:
        peer.extra[fields.FAITHFULNESS] = faithfulness_of(own, peer)
        yield peer


def stamp(record: Record) -> None:
    """Commit and date, as the worker stamps the project's own records."""
    import datetime as dt

    from segbench import machine

    record.commit = machine.git_commit()
    record.date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def ct_file(opts: Any, work: Path) -> tuple[Path, list[int]]:
    """The NIfTI file the tool reads: the user's own --input as given, else the run's phantom
    CT (the very volume the project's pipelines read) written to ``work``."""
    from segbench.benchmarks.whole_ct.plan import ct_source
    from segbench.pipelines import scan

    source = ct_source(opts)
    if source["kind"] == "nifti":
        ct = scan.read_nifti(source["path"])
        return Path(source["path"]), list(ct.hu.shape)
    ct = scan.load_ct(source)
    path = launch.write_ct(ct.hu, ct.spacing, work / "ct.nii.gz")
    return path, list(ct.hu.shape)


def peer_key(mode: str, ml: bool) -> str:
    """A peer record's key; ``("fast", True)`` is the whole_ct view's PEER_FAST_KEY, the record the
    per-CT table's "vs the real tool" ratio divides by."""
    return f"peer:totalsegmentator:{mode}{':ml' if ml else ''}"


# --------------------------------------------------------------------------------------------
# Faithfulness and tables


def own_fast_record(records: Sequence[Record]) -> Record | None:
    """The project's own eager --fast pipeline of the same file, if it ran and succeeded."""
    return next((r for r in records if r.extra.get(fields.METHOD) == OWN_FAST_METHOD
                 and r.runtime == OWN_FAST_RUNTIME and r.ok and r.timing), None)


def own_seconds(own: Record) -> tuple[float, float]:
    """(network passes + their accumulation, whole pipeline) of one own loop. nnU-Net's
    progress bar covers both the passes and the weighted accumulation of every tile, so the
    network side of the comparison is the own loop's predict + accumulate stages."""
    stages = own.extra.get(fields.STAGES_S, {})
    network = float(stages.get("predict", 0.0)) + float(stages.get("accumulate", 0.0))
    whole = 1.0 / own.timing["throughput"]  # loops per second -> seconds per CT
    return network, whole


def faithfulness_of(own: Record, peer: Record) -> dict[str, Any]:
    network, whole = own_seconds(own)
    out = runner.faithfulness(network, whole, peer)
    out["own"] = own.key
    return out
