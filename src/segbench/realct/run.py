"""The real_ct benchmark's command line and run: check everything, then measure, saving each row.

    uv run benchmarks/real_ct/benchmark.py --dataset DIR [--observers DIR] [--core-minutes M]

``--dataset``: a labelled data set in nnU-Net v2's raw layout (see ``realct.dataset``): the grid
ceilings on its test split, then the three methods trained on its training split with the same
CPU budget each and scored per organ (Dice, NSD) on its test split under every runtime.
``--observers``: masks of two annotators (``realct.observers``): their agreement and the grid
ceilings on the same organs. Without either, ``--quick`` runs on a tiny phantom stand-in data
set written to a temporary folder (and says so); a full run without data is a usage error.

Every input is read and checked before any training (one line naming the file, exit 2); each
row is saved as soon as it is measured (an interrupted run keeps them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segbench import cli, machine, stop
from segbench.realct import grids as grid_mod
from segbench.realct import methods as methods_mod
from segbench.realct.dataset import DatasetError, check, load_case, open_dataset
from segbench.results import ResultsError, load_or_new, results_path, update

PROG = "benchmarks/real_ct/benchmark.py"
QUICK_CORE_MINUTES = 0.02
QUICK_GRIDS = ("2d-lowres", "3d-3mm")


def build_parser() -> argparse.ArgumentParser:
    p = cli._Parser(prog=PROG, description="Quality on real CT: grid ceilings against two "
                    "annotators, and 2D against 3D trained alike, under every runtime")
    p.add_argument("--dataset", type=Path, help="labelled CTs in nnU-Net v2 raw layout")
    p.add_argument("--observers", type=Path,
                   help="SPLIT/SCAN/ANNOTATOR/ORGAN.nii.gz masks of two annotators")
    p.add_argument("--part", choices=("all", "ceiling", "trained"), default="all")
    p.add_argument("--methods", type=cli._comma_list, default=list(methods_mod.METHOD_KEYS))
    p.add_argument("--runtimes", type=cli._comma_list,
                   help="for every method (default: eager, openvino-bf16 and an INT8 runtime "
                        "per method)")
    p.add_argument("--grids", type=cli._comma_list,
                   help=f"default: all ({', '.join(grid_mod.GRID_KEYS)}); --quick: "
                        f"{', '.join(QUICK_GRIDS)}")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--cases", type=int, help="score only the first N test cases (default all)")
    p.add_argument("--scans", type=int, help="only the first N annotated scans (default all)")
    p.add_argument("--core-minutes", type=float,
                   help=f"CPU budget per network (default {methods_mod.DEFAULT_CORE_MINUTES:g})")
    p.add_argument("--all-organs", action="store_true",
                   help="observer ceilings also for brain and lungs (slow, uninformative)")
    p.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p.add_argument("--out", type=Path, default=cli.default_results_dir())
    p.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    return p


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from segbench import runtimes

    args = build_parser().parse_args(argv)
    for name in ("cases", "scans", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise cli.UsageError(f"--{name} must be >= 1, got {value}")
    if args.tolerance <= 0 or (args.core_minutes is not None and args.core_minutes <= 0):
        raise cli.UsageError("--tolerance and --core-minutes must be positive")
    cli.check_names("method", args.methods, methods_mod.METHOD_KEYS)
    if args.grids is None:
        args.grids = list(QUICK_GRIDS if args.quick else grid_mod.GRID_KEYS)
    cli.check_names("grid", args.grids, grid_mod.GRID_KEYS)
    if args.runtimes:
        cli.check_names("runtime", args.runtimes, runtimes.names())
    if args.dataset is None and args.observers is None and not args.quick:
        raise cli.UsageError("give --dataset DIR (labelled CTs, nnU-Net raw layout) and/or "
                             "--observers DIR (masks of two annotators); --quick alone runs "
                             "on a phantom stand-in")
    cli.check_writable(args.out)
    return args


def phantom_standin(folder: Path, cases: int = 4) -> Path:
    """A tiny nnU-Net raw data set of phantom volumes (quick runs and tests without data)."""
    import json

    import nibabel as nib
    import numpy as np

    from segbench.data.phantom import make_volume, split_seed

    root = folder / "phantom-standin"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    organs = 3
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    names = [f"PH_{i:03d}" for i in range(cases)]
    for i, name in enumerate(names):
        p = make_volume((16, 64, 64), split_seed("eval", 900 + i), organs)
        nib.save(nib.Nifti1Image(p.hu.transpose(2, 1, 0).astype(np.int16), affine),
                 root / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(p.labels.transpose(2, 1, 0).astype(np.uint8), affine),
                 root / "labelsTr" / f"{name}.nii.gz")
    labels = {"background": 0, **{f"organ{k}": k for k in range(1, organs + 1)}}
    (root / "dataset.json").write_text(json.dumps(
        {"name": "phantom stand-in (not real CT)", "labels": labels,
         "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "test": names[-1:]}))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(argv)
    except cli.UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="segbench-realct-") as tmp:
        if args.quick and args.dataset is None and args.observers is None:
            args.dataset = phantom_standin(Path(tmp))
            print("no --dataset given: the quick run uses a phantom stand-in, not real CT",
                  file=sys.stderr)
        try:
            plan = Plan.make(args)
            path = results_path(args.out, "real_ct", machine.slug(), args.quick)
            results = load_or_new(path, "real_ct", machine.capture())
        except (cli.UsageError, DatasetError, ResultsError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        print(plan.text(), file=sys.stderr)
        if args.dry_run:
            return 0
        try:
            with stop.on_signals():  # SIGTERM / SIGINT: end the run's processes, keep rows
                plan.run(results, path)
        except KeyboardInterrupt as exc:
            return stop.stopped(exc, path)
        from segbench.realct.view import render

        print(render(results))
        print(f"results: {path}", file=sys.stderr)
    return 0


class Plan:
    """What a run will do, every input read and checked."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dataset = None
        self.train_cases: list[Any] = []
        self.test_cases: list[Any] = []
        self.scans: list[Any] = []

    @classmethod
    def make(cls, args: argparse.Namespace) -> "Plan":
        plan = cls(args)
        if args.dataset is not None:
            ds = plan.dataset = open_dataset(args.dataset)
            if ds.splits:
                plan.test_cases = ds.split(args.test_split)
                plan.train_cases = ds.split(args.train_split)
            else:  # no split file: the last fifth of the cases by name are the test set
                cut = max(1, len(ds.cases) * 4 // 5)
                plan.train_cases, plan.test_cases = ds.cases[:cut], ds.cases[cut:]
            if args.cases:
                plan.test_cases = plan.test_cases[:args.cases]
            if args.quick:
                plan.test_cases, plan.train_cases = plan.test_cases[:1], plan.train_cases[:3]
            if not plan.test_cases or (args.part != "ceiling" and not plan.train_cases):
                raise DatasetError(f"{ds.root}: the split has no cases to train or score")
            needed = plan.test_cases + (plan.train_cases if args.part != "ceiling" else [])
            print(f"checking {len(needed)} cases of {ds.name} ...", file=sys.stderr)
            check(ds, needed)
        if args.observers is not None:
            from segbench.realct.observers import load_mask, open_observers, select

            plan.scans = select(open_observers(args.observers), 1 if args.quick else args.scans)
            for scan in plan.scans:  # every mask read once: a truncated file fails here
                for masks in scan.masks.values():
                    for f in masks.values():
                        load_mask(f)
        return plan

    @property
    def core_minutes(self) -> float:
        if self.args.core_minutes:
            return self.args.core_minutes
        return QUICK_CORE_MINUTES if self.args.quick else methods_mod.DEFAULT_CORE_MINUTES

    def text(self) -> str:
        a, lines = self.args, []
        if self.dataset is not None:
            d = self.dataset
            lines.append(f"data set {d.name}: {len(self.train_cases)} training cases "
                         f"({a.train_split}), {len(self.test_cases)} scored ({a.test_split}), "
                         f"organs {', '.join(d.labels[k] for k in sorted(d.labels))}")
            if a.part in ("all", "ceiling"):
                lines.append(f"  grid ceilings: {', '.join(a.grids)}")
            if a.part in ("all", "trained"):
                for key in a.methods:
                    m = methods_mod.method(key)
                    rts = methods_mod.runtimes_for(m.kind, a.runtimes, a.quick)
                    lines.append(f"  {m.display}: trained {self.core_minutes:g} core-minutes, "
                                 f"paths {', '.join(m.paths)}, runtimes {', '.join(rts)}")
                lines.append(f"  about {len(a.methods) * self.core_minutes / 2:.0f} min of "
                             "training on 2 cores (cached weights skip it), then scoring")
        if self.scans:
            lines.append(f"observers: {len(self.scans)} scans, two annotators each; grids "
                         f"{', '.join(a.grids)}")
        return "\n".join(lines)

    def _save(self, results: Any, path: Path, records: Sequence[Any]) -> None:
        """Merge ``records`` into the file under its lock (another run may write it too)."""
        fresh = update(path, results, records)
        results.records = fresh.records

    def run(self, results: Any, path: Path) -> None:
        from segbench.realct import measure_quality as mq

        a = self.args
        if self.scans:
            described = {"name": _observers_name(a.observers), "split": "all",
                         "cases": len(self.scans)}
            skip = () if a.all_organs else mq.LARGE_ORGANS
            self._save(results, path, mq.observer_ceilings(self.scans, described, a.grids,
                                                           a.tolerance, a.quick, skip))
        if self.dataset is None:
            return
        ds = self.dataset
        if a.part in ("all", "ceiling"):
            test = [load_case(ds, c) for c in self.test_cases]
            described = ds.describe(a.test_split, len(test))
            self._save(results, path, mq.dataset_ceilings(ds, test, described, a.grids,
                                                           a.tolerance, a.quick))
            del test
        if a.part in ("all", "trained"):
            from segbench.realct.trained import run_trained

            run_trained(self, lambda recs: self._save(results, path, recs))


def _observers_name(path: Path) -> str:
    """The name a results file gives an annotator set: its folder's name (the set's name)."""
    return Path(path).resolve().name
