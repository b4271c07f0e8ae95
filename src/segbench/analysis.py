"""What is computed from records, before anything is formatted: speed-ups over a reference,
the fastest row per network, Dice drops and verdicts on trained weights, and whether two runs
differ beyond their spread. Pure functions of records; no formatting, no files."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from segbench import fields
from segbench.fidelity import DICE_TOLERANCE
from segbench.results import Record
from segbench.runtimes import REFERENCE


def model_key(r: Record) -> str:
    """Everything that identifies a cell except its runtime."""
    return f"{r.family}|{r.model}|{r.classes}|{'x'.join(map(str, r.shape))}|t{r.threads}"


def speedups(records: Sequence[Record], baseline: str = REFERENCE) -> dict[str, float]:
    """record.key -> throughput relative to the same model's ``baseline`` row."""
    base = {model_key(r): r.throughput for r in records if r.runtime == baseline and r.ok}
    return {r.key: r.throughput / base[model_key(r)] for r in records
            if r.ok and r.throughput and base.get(model_key(r))}


def fastest(records: Sequence[Record]) -> set[str]:
    """Keys of the fastest ok row of each model."""
    best: dict[str, Record] = {}
    for r in records:
        if r.ok and r.throughput and (model_key(r) not in best
                                      or r.throughput > best[model_key(r)].throughput):
            best[model_key(r)] = r
    return {r.key for r in best.values()}


def dice_drops(records: Sequence[Record], baseline: str = REFERENCE
               ) -> dict[tuple[str, str], float]:
    """(model, runtime) -> Dice against ground truth minus the same network's ``baseline`` Dice,
    from records that were scored on phantoms. A record that carries FP32 eager's Dice on the
    same phantoms (``dice_fp32``, measured in its own cell) uses it; otherwise the ``baseline``
    row of the same network gives it."""
    base = {r.model: r.extra[fields.DICE] for r in records
            if r.runtime == baseline and r.ok and fields.DICE in r.extra}
    drops = {}
    for r in records:
        if not r.ok or fields.DICE not in r.extra or is_weights_check(r):
            continue
        own = own_dice_drop(r) if baseline == REFERENCE else None
        if own is not None:
            drops[(r.model, r.runtime)] = own
        elif r.model in base:
            drops[(r.model, r.runtime)] = r.extra[fields.DICE] - base[r.model]
    return drops


def own_dice_drop(r: Record) -> float | None:
    """This row's Dice against the phantom truth minus FP32 eager's on the same phantoms, both
    measured in its own cell (0 for the eager row itself); None if it was not scored."""
    dice = r.extra.get(fields.DICE)
    if dice is None:
        return None
    if r.runtime == REFERENCE:
        return 0.0
    reference = r.extra.get(fields.DICE_FP32)
    return None if reference is None else dice - reference


def is_weights_check(r: Record) -> bool:
    """A random-weight twin of a trained row, timed only to show that speed does not depend on
    the weights: kept out of every table, ranking and plot but its own."""
    return bool(r.extra.get(fields.WEIGHTS_CHECK))


def weights_check_groups(records: Sequence[Record]) -> list[tuple[Record, list[Record]]]:
    """(trained row, its measured random-weight twins in run order) for every trained row that
    has twins: same network, input shape, threads and runtime."""
    trained = {(model_key(r), r.runtime): r for r in records
               if r.ok and r.throughput and not is_weights_check(r) and r.weights != "random"}
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        key = (model_key(r), r.runtime)
        if is_weights_check(r) and r.ok and r.throughput and key in trained:
            groups.setdefault(key, []).append(r)
    return [(trained[key], twins) for key, twins in groups.items()]


def within_spread(row: Record, others: Sequence[Record]) -> bool:
    """Whether ``row``'s interquartile range overlaps the span of ``others``' (lowest first
    quartile to highest third quartile). Twins timed before and after a row bracket it, so
    drift of the machine during the run widens the span instead of passing for a difference."""
    low = min(_quartiles(o)[0] for o in others)
    high = max(_quartiles(o)[1] for o in others)
    q25, q75 = _quartiles(row)
    return not (q75 < low or q25 > high)


def dice_verdicts(records: Sequence[Record], tolerance: float = DICE_TOLERANCE
                  ) -> dict[str, tuple[list[str], list[tuple[str, float]]]]:
    """model -> (runtimes within ``tolerance`` Dice of FP32, [(runtime, drop) beyond it])."""
    out: dict[str, tuple[list[str], list[tuple[str, float]]]] = {}
    for (model, runtime), drop in dice_drops(records).items():
        keep, lose = out.setdefault(model, ([], []))
        if runtime == REFERENCE:
            continue
        if abs(drop) <= tolerance:
            keep.append(runtime)
        else:
            lose.append((runtime, drop))
    return out


def _quartiles(r: Record) -> tuple[float, float]:
    q25, q75 = np.percentile(r.timing["repeat_throughputs"], [25, 75])
    return float(q25), float(q75)


def significant(a: Record, b: Record) -> bool:
    """Different only if the interquartile ranges of the two runs' repeats do not overlap."""
    a25, a75 = _quartiles(a)
    b25, b75 = _quartiles(b)
    return a75 < b25 or b75 < a25


def newest_date(records: Sequence[Record]) -> str:
    """The date of the newest record ('' if none has one): which run of a machine is latest."""
    return max((r.date for r in records if r.date), default="")
