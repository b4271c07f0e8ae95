"""Tables of the real_ct results (reads records only: no torch, no runtime).

- per data set, the grid ceilings per organ (Dice / NSD), with the inter-annotator agreement
  beside them where two annotators drew the same organs: a grid that keeps more than the two
  experts agree is harmless for that organ, one that keeps less is not;
- per data set, the trained methods: mean Dice / NSD per output path and runtime, the drop
  against the method's FP32 eager labels, then per organ.

Every caption names the data set, its split and case count, the NSD tolerance, and (for
trained rows) the training budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from segbench import fields
from segbench.results import Record, ResultsFile

DASH = "–"
DICE_TOLERANCE = 0.01  # a path or runtime losing more than this against its reference says so


def _pair(s: dict[str, Any] | None) -> str:
    if not s:
        return DASH
    return f"{s['dice']:.3f} / {s['nsd']:.3f}"


def _means(r: Record) -> str:
    """A record's foreground mean Dice / NSD, as :func:`_pair` shows an organ's."""
    return _pair({"dice": r.extra[fields.MEAN_DICE], "nsd": r.extra[fields.MEAN_NSD]})


def _num(x: float | None, digits: int = 3) -> str:
    return DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _dataset_text(d: dict[str, Any]) -> str:
    text = f"{d['name']}, {d['cases']} case(s) of split '{d['split']}'"
    if d.get("train_cases"):
        text += f", trained on {d['train_cases']} case(s) of split '{d.get('train_split')}'"
    return text


def other_budget(r: Record) -> str:
    """The budget of a trained row beside the equal-budget comparison (its key ends in its
    budget, e.g. "80cm"); "" for the comparison's own rows."""
    tail = r.key.rsplit("|", 1)[-1]
    return tail if tail.endswith("cm") else ""


def _training_text(t: dict[str, Any], core_minutes: float | None) -> str:
    steps = t.get("steps")
    if steps is None:
        return DASH
    minutes = core_minutes if core_minutes is not None else t.get("recipe", {}).get(
        "core_minutes")
    return f"{steps} steps" + (f" / {minutes:g} core-min" if minutes is not None else "")


def ceiling_table(records: Sequence[Record]) -> list[tuple[str, str]]:
    """One table per data set: organs down, grids (and the two annotators) across."""
    out = []
    by_set: dict[str, list[Record]] = {}
    for r in records:
        if r.ok and r.extra.get(fields.KIND) in ("ceiling", "inter_annotator"):
            by_set.setdefault(r.extra[fields.DATASET]["name"], []).append(r)
    for recs in by_set.values():
        ia = next((r for r in recs if r.extra[fields.KIND] == "inter_annotator"), None)
        grids = [r for r in recs if r.extra[fields.KIND] == "ceiling"]
        organs = sorted({o for r in recs for o in r.extra[fields.ORGANS]})
        headers = ["organ"] + (["two annotators"] if ia else []) + [
            r.extra[fields.DISPLAY] for r in grids]
        rows = []
        for organ in organs:
            row = [organ]
            ref = ia.extra[fields.ORGANS].get(organ) if ia else None
            if ia:
                row.append(_pair(ref))
            for r in grids:
                s = r.extra[fields.ORGANS].get(organ)
                cell = _pair(s)
                if ref and s:
                    cell += " ok" if s["dice"] >= ref["dice"] else " **below**"
                row.append(cell)
            rows.append(row)
        mean = ["mean"] + ([_means(ia)] if ia else []) + [_means(r) for r in grids]
        rows.append(mean)
        first = recs[0].extra
        caption = ("Best Dice / NSD an output grid can keep (majority labels on the grid, "
                   "brought back by nearest neighbour; no network), "
                   f"{_dataset_text(first[fields.DATASET])}, NSD tolerance "
                   f"{first[fields.TOLERANCE_MM]:g} mm")
        if first.get(fields.ORGANS_LEFT_OUT):
            caption += f"; left out: {', '.join(first[fields.ORGANS_LEFT_OUT])} (whole organs)"
        if ia:
            pairs = ", ".join(ia.extra.get(fields.ANNOTATORS, []))
            caption += ("; 'two annotators' is their agreement with each other "
                        f"({pairs}); 'ok': the grid keeps at "
                        "least the annotators' Dice, '**below**': it loses more than two experts "
                        "disagree")
        out.append((caption, tabulate(rows, headers=headers, tablefmt="github",
                                      disable_numparse=True)))
    return out


def _label(r: Record, scored: Any) -> str:
    """A trained row's method; one scored on other cases than the caption's says so."""
    cases = r.extra[fields.DATASET].get("cases")
    return r.extra[fields.DISPLAY] + (f", {cases} cases" if cases != scored else "")


def trained_tables(records: Sequence[Record]) -> list[tuple[str, str]]:
    recs = [r for r in records if r.extra.get(fields.KIND) == "trained"]
    out = []
    for name in dict.fromkeys(r.extra[fields.DATASET]["name"] for r in recs):
        mine = [r for r in recs if r.extra[fields.DATASET]["name"] == name]
        eager = {(r.extra[fields.METHOD], r.extra[fields.PATH], other_budget(r)): r for r in mine
                 if r.runtime == "eager" and r.ok}
        first = mine[0].extra
        scored = first[fields.DATASET].get("cases")

        rows = []
        for r in mine:
            e = eager.get((r.extra[fields.METHOD], r.extra[fields.PATH], other_budget(r)))
            drop = (r.extra[fields.MEAN_DICE] - e.extra[fields.MEAN_DICE]) if (r.ok and e) else None
            t = r.extra.get(fields.TRAINING, {})
            rows.append([_label(r, scored), r.extra[fields.PATH], r.runtime,
                         _num(r.extra.get(fields.MEAN_DICE)) if r.ok else DASH,
                         _num(r.extra.get(fields.MEAN_NSD)) if r.ok else DASH,
                         f"{drop:+.3f}" if drop is not None else DASH,
                         _num(r.extra.get(fields.DICE_VS_EAGER)) if r.ok else DASH,
                         _training_text(t, r.extra.get(fields.CORE_MINUTES)),
                         r.status if r.ok else f"{r.status}: {r.reason}"])
        budget = first.get(fields.TRAINING, {}).get("budget", "?")
        out.append((f"Trained on real CT, scored per organ against manual labels: "
                    f"{_dataset_text(first[fields.DATASET])}; each network trained from random "
                    f"init with {budget} (a row naming its core-minutes: another budget); "
                    f"NSD tolerance {first[fields.TOLERANCE_MM]:g} mm",
                    tabulate(rows, headers=["method", "path", "runtime", "Dice", "NSD",
                                            "Dice vs its eager", "labels vs eager (Dice)",
                                            "training", "status"],
                             tablefmt="github", disable_numparse=True)))
        ok = [r for r in mine if r.ok and r.runtime == "eager"]
        organs = sorted({o for r in ok for o in r.extra[fields.ORGANS]})
        rows = [[f"{_label(r, scored)}, {r.extra[fields.PATH]}"]
                + [_pair(r.extra[fields.ORGANS].get(o)) for o in organs] for r in ok]
        if ok:
            data = _dataset_text(first[fields.DATASET])
            out.append((f"Per organ, FP32 eager (Dice / NSD), {data}",
                        tabulate(rows, headers=["method, path", *organs], tablefmt="github",
                                 disable_numparse=True)))
    return out


def other_rows(records: Sequence[Record]) -> list[tuple[str, str]]:
    """Rows no other table shows (a ceiling that failed, an unknown kind), with their reason."""
    shown = [r for r in records if (r.extra.get(fields.KIND) == "trained")
             or (r.ok and r.extra.get(fields.KIND) in ("ceiling", "inter_annotator"))]
    rest = [r for r in records if r not in shown]
    if not rest:
        return []
    rows = [[fields.display(r), r.runtime,
             r.status if r.ok else f"{r.status}: {r.reason}"] for r in rest]
    return [("Other rows", tabulate(rows, headers=["row", "runtime", "status"],
                                    tablefmt="github", disable_numparse=True))]


def tables(results: ResultsFile) -> list[tuple[str, str]]:
    return (ceiling_table(results.records) + trained_tables(results.records)
            + other_rows(results.records))


def render(results: ResultsFile) -> str:
    return "\n\n".join((f"**{t}**\n\n" if t else "") + body for t, body in tables(results))


def path_verdict(records: Sequence[Record]) -> dict[str, Any] | None:
    """What real CT says about the 2D champion's output paths: its FP32 eager Dice / NSD with
    the coarse ``lowres`` path and with the exact ``full`` path, on the same network, cases and
    training; None when the run has not both rows."""
    rows = {r.extra.get(fields.PATH): r for r in records
            if r.ok and r.extra.get(fields.KIND) == "trained" and r.runtime == "eager"
            and r.extra.get(fields.METHOD) == "2d-champion"
            and not other_budget(r)}
    if "lowres" not in rows or "full" not in rows:
        return None
    low, full = rows["lowres"].extra, rows["full"].extra
    return {"dataset": _dataset_text(low[fields.DATASET]),
            "budget": low.get(fields.TRAINING, {}).get("budget", "?"),
            "lowres": {"dice": low[fields.MEAN_DICE], "nsd": low[fields.MEAN_NSD]},
            "full": {"dice": full[fields.MEAN_DICE], "nsd": full[fields.MEAN_NSD]},
            "cost": full[fields.MEAN_DICE] - low[fields.MEAN_DICE]}


def find_path_verdict(results_dir: Path, slug: str | None = None) -> dict[str, Any] | None:
    """:func:`path_verdict` from the first real_ct file that has one (this machine's first,
    ``results.full_results_this_machine_first``), with that file's machine and whether it is
    this one (``slug``)."""
    from segbench.machine import describe
    from segbench.results import full_results_this_machine_first

    for found in full_results_this_machine_first(results_dir, "real_ct", slug):
        verdict = path_verdict(found.records)
        if verdict is not None:
            return {**verdict, "machine": describe(found.machine),
                    "same_machine": found.path is not None and found.path.stem == slug}
    return None


def summary_tables(records: Sequence[Record]) -> list[tuple[str, str]]:
    """The README's short view of real CT: per data set, each grid's mean Dice / NSD ceiling
    (with the annotators' agreement where there is one), and each trained method's mean Dice /
    NSD under FP32 eager with the largest drop any of its runtimes costs."""
    out = []
    by_set: dict[str, list[Record]] = {}
    for r in records:
        if r.ok and r.extra.get(fields.KIND) in ("ceiling", "inter_annotator"):
            by_set.setdefault(r.extra[fields.DATASET]["name"], []).append(r)
    grids = list(dict.fromkeys(r.extra[fields.DISPLAY] for recs in by_set.values() for r in recs
                               if r.extra[fields.KIND] == "ceiling"))
    rows = []
    for name, recs in by_set.items():
        ia = next((r for r in recs if r.extra[fields.KIND] == "inter_annotator"), None)
        row = [name, _means(ia) if ia else DASH]
        for grid in grids:
            r = next((r for r in recs if r.extra[fields.KIND] == "ceiling"
                      and r.extra[fields.DISPLAY] == grid), None)
            if r is None:
                row.append(DASH)
                continue
            cell = _means(r)
            if ia is not None:
                theirs = ia.extra[fields.ORGANS]
                below = [o for o, v in r.extra[fields.ORGANS].items()
                         if o in theirs and v["dice"] < theirs[o]["dice"]]
                cell += f", {len(below)}/{len(r.extra[fields.ORGANS])} below"
            row.append(cell)
        rows.append(row)
    if rows:
        out.append(("Best mean Dice / NSD each output grid can keep (no network); 'below': "
                    "organs where it keeps less than two annotators agree",
                    tabulate(rows, headers=["data set", "two annotators", *grids],
                             tablefmt="github", disable_numparse=True)))
    trained = [r for r in records if r.extra.get(fields.KIND) == "trained" and not other_budget(r)]
    rows = []
    for r in trained:
        if not (r.ok and r.runtime == "eager"):
            continue
        others = [o for o in trained if o.ok
                  and o.extra.get(fields.METHOD) == r.extra[fields.METHOD]
                  and o.extra.get(fields.PATH) == r.extra[fields.PATH] and o.runtime != "eager"]
        worst = min(others, key=lambda o: o.extra[fields.MEAN_DICE], default=None)
        drop = (f"{worst.extra[fields.MEAN_DICE] - r.extra[fields.MEAN_DICE]:+.3f} "
                f"(`{worst.runtime}`)" if worst else DASH)
        rows.append([r.extra[fields.DISPLAY], r.extra[fields.PATH],
                     _means(r), drop,
                     str(r.extra.get(fields.TRAINING, {}).get("steps", DASH))])
    if rows:
        first = trained[0].extra
        out.append((f"Trained on real CT ({_dataset_text(first[fields.DATASET])}; "
                     f"{first.get(fields.TRAINING, {}).get('budget', '?')} each), FP32 eager",
                     tabulate(rows, headers=["method", "path", "Dice / NSD",
                                             "worst runtime's Dice change", "steps"],
                              tablefmt="github", disable_numparse=True)))
    return out
