"""The real-CT measurements: grid ceilings, inter-annotator agreement, trained methods.

Each produces :class:`segbench.results.Record` rows (benchmark ``real_ct``) holding per-organ
means (``extra["organs"]``: {organ: {"dice", "nsd", "n"}}) and the per-case values behind
them (``extra["cases"]``), so a table can be recomputed and a doubtful mean traced to its cases.
Nothing here is timed: these are quality measurements.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from segbench import quality
from segbench.realct import grids as grid_mod
from segbench.realct.dataset import Dataset, Volume, load_case
from segbench.realct.observers import Scan, load_mask
from segbench.results import Record

BENCHMARK = "real_ct"
# Organs an annotator set may hold that no output grid question is about: whole-organ volumes
# of hundreds of thousands of voxels keep Dice near 1 on any grid, and their surfaces cost most
# of the run's time. Left out of the observer ceilings by default (``--all-organs`` keeps them).
LARGE_ORGANS = ("Brain", "Lung-Lt", "Lung-Rt")


def _bar(items: Sequence[Any], desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, mininterval=2.0)


def summarise(per_case: dict[str, dict[str, tuple[float, float]]]) -> dict[str, Any]:
    """{case: {organ: (dice, nsd)}} -> per-organ means and the foreground means."""
    by_organ: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for organs in per_case.values():
        for organ, pair in organs.items():
            by_organ[organ].append(pair)
    organs = {o: {"dice": float(np.mean([p[0] for p in v])),
                  "nsd": float(np.mean([p[1] for p in v])), "n": len(v)}
              for o, v in sorted(by_organ.items())}
    return {"organs": organs,
            "mean_dice": quality.foreground_mean(organs, "dice"),
            "mean_nsd": quality.foreground_mean(organs, "nsd"),
            "cases": {c: {o: [round(d, 5), round(n, 5)] for o, (d, n) in v.items()}
                      for c, v in per_case.items()}}


def record(key: str, model: str, runtime: str, extra: dict[str, Any], *, quick: bool,
           status: str = "ok", reason: str = "", precision: str | None = None) -> Record:
    from segbench import machine

    extra = dict(extra)
    if precision:
        extra["precision"] = precision
    return Record(benchmark=BENCHMARK, key=key, model=model, runtime=runtime, shape=[],
                  batch=1, threads=machine.physical_cores(), quick=quick, status=status,
                  reason=reason, extra=extra, commit=machine.git_commit(),
                  packages=machine.package_versions(), date=_today())


def _today() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# The grid's ceiling


def ceiling_of_volume(volume: Volume, organs: dict[int, str], grid: grid_mod.Grid,
                      tolerance_mm: float) -> dict[str, tuple[float, float]]:
    """Per-organ (Dice, NSD) of the best labels ``grid`` can hold, against the reference."""
    best = grid_mod.best_labels(volume.labels, grid.shape(volume.labels.shape, volume.spacing))
    scores = quality.per_organ(volume.labels, best, organs, volume.spacing, tolerance_mm)
    return {o: (s["dice"], s["nsd"]) for o, s in scores.items()}


def dataset_ceilings(dataset: Dataset, volumes: Sequence[Volume], described: dict[str, Any],
                     keys: Sequence[str], tolerance_mm: float, quick: bool) -> list[Record]:
    out = []
    for key in keys:
        g = grid_mod.grid(key)
        per_case = {v.name: ceiling_of_volume(v, dataset.labels, g, tolerance_mm)
                    for v in _bar(volumes, f"ceiling {key}")}
        out.append(record(f"ceiling|{described['name']}|{key}", g.display, "-",
                          {"kind": "ceiling", "grid": key, "display": g.display,
                           "dataset": described, "tolerance_mm": tolerance_mm,
                           **summarise(per_case)}, quick=quick))
    return out


def observer_ceilings(scans: Sequence[Scan], described: dict[str, Any], keys: Sequence[str],
                      tolerance_mm: float, quick: bool, skip: Sequence[str] = LARGE_ORGANS
                      ) -> list[Record]:
    """Inter-annotator agreement per organ, and each grid's ceiling on every annotator's mask
    (averaged over the annotators of a scan), on the same scans and organs (all but
    ``skip``)."""
    drawn = sorted({o for scan in scans for o in scan.organs()})
    organs = [o for o in drawn if o not in skip]
    skipped = [o for o in drawn if o in skip]
    between: dict[str, dict[str, tuple[float, float]]] = {}
    ceilings: dict[str, dict[str, dict[str, tuple[float, float]]]] = {k: {} for k in keys}
    pairs = set()
    for scan in _bar(scans, "observers"):
        case = f"{scan.split}/{scan.name}"
        between[case] = {}
        for key in keys:
            ceilings[key][case] = {}
        a, b = scan.annotators[:2]
        pairs.add(f"{a} vs {b}")
        for organ in scan.organs():
            if organs is not None and organ not in organs:
                continue
            ma, spacing = load_mask(scan.masks[a][organ])
            mb, _ = load_mask(scan.masks[b][organ])
            if ma.shape != mb.shape or not ma.any() or not mb.any():
                continue  # an empty mask: the organ was not drawn by one of them
            both = quality.organ_scores(ma, mb, spacing, tolerance_mm)
            if both is None:
                continue
            # symmetric: Dice is; NSD as defined is symmetric too
            between[case][organ] = both
            for key in keys:
                g = grid_mod.grid(key)
                shape = g.shape(ma.shape, spacing)
                kept = [quality.organ_scores(m, grid_mod.best_mask(m, shape), spacing,
                                             tolerance_mm) for m in (ma, mb)]
                ceilings[key][case][organ] = (float(np.mean([k[0] for k in kept])),
                                              float(np.mean([k[1] for k in kept])))
    name = described["name"]
    common = {"dataset": described, "tolerance_mm": tolerance_mm,
              "annotators": sorted(pairs), "organs_left_out": skipped}
    out = [record(f"observers|{name}|inter-annotator", "inter-annotator", "-",
                  {"kind": "inter_annotator", "display": "Two annotators (each other's "
                   "reference)", **common, **summarise(between)}, quick=quick)]
    for key in keys:
        g = grid_mod.grid(key)
        out.append(record(f"observers|{name}|{key}", g.display, "-",
                          {"kind": "ceiling", "grid": key, "display": g.display, **common,
                           **summarise(ceilings[key])}, quick=quick))
    return out


# --------------------------------------------------------------------------------------------
# Trained methods under runtimes


def score_volume(volume: Volume, labels: np.ndarray, organs: dict[int, str],
                 tolerance_mm: float) -> dict[str, tuple[float, float]]:
    scores = quality.per_organ(volume.labels, labels, organs, volume.spacing, tolerance_mm)
    return {o: (s["dice"], s["nsd"]) for o, s in scores.items()}


def run_method(method: Any, path: str, runtime: str, prepared_call: Callable[[Any], Any],
               cases: Sequence[Any], dataset: Dataset, classes: int, tolerance_mm: float,
               eager_labels: dict[str, np.ndarray] | None) -> tuple[dict[str, Any],
                                                                   dict[str, np.ndarray]]:
    """Segment every scored case, score it against the truth and against FP32 eager."""
    from segbench.realct.methods import segment

    per_case, vs_eager, labels_of = {}, [], {}
    for case in _bar(cases, f"{method.key} {path} {runtime}"):
        volume = load_case(dataset, case)
        labels = segment(method, prepared_call, volume, classes)
        labels_of[case.name] = labels
        per_case[case.name] = score_volume(volume, labels, dataset.labels, tolerance_mm)
        if eager_labels is not None and case.name in eager_labels:
            ref = eager_labels[case.name]
            d = quality.foreground_mean_dice(ref, labels)
            if not math.isnan(d):
                vs_eager.append(d)
    out = summarise(per_case)
    if vs_eager:
        out["dice_vs_eager"] = float(np.mean(vs_eager))
    return out, labels_of
