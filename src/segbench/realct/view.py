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

from segbench.results import Record, ResultsFile

DASH = "–"
DICE_TOLERANCE = 0.01  # a path or runtime losing more than this against its reference says so


def _pair(s: dict[str, Any] | None) -> str:
    if not s:
        return DASH
    return f"{s['dice']:.3f} / {s['nsd']:.3f}"


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
        if r.ok and r.extra.get("kind") in ("ceiling", "inter_annotator"):
            by_set.setdefault(r.extra["dataset"]["name"], []).append(r)
    for recs in by_set.values():
        ia = next((r for r in recs if r.extra["kind"] == "inter_annotator"), None)
        grids = [r for r in recs if r.extra["kind"] == "ceiling"]
        organs = sorted({o for r in recs for o in r.extra["organs"]})
        headers = ["organ"] + (["two annotators"] if ia else []) + [
            r.extra["display"] for r in grids]
        rows = []
        for organ in organs:
            row = [organ]
            ref = ia.extra["organs"].get(organ) if ia else None
            if ia:
                row.append(_pair(ref))
            for r in grids:
                s = r.extra["organs"].get(organ)
                cell = _pair(s)
                if ref and s:
                    cell += " ok" if s["dice"] >= ref["dice"] else " **below**"
                row.append(cell)
            rows.append(row)
        mean = ["mean"] + ([_pair({"dice": ia.extra["mean_dice"], "nsd": ia.extra["mean_nsd"]})]
                           if ia else [])
        mean += [_pair({"dice": r.extra["mean_dice"], "nsd": r.extra["mean_nsd"]})
                 for r in grids]
        rows.append(mean)
        first = recs[0].extra
        caption = ("Best Dice / NSD an output grid can keep (majority labels on the grid, "
                   "brought back by nearest neighbour; no network), "
                   f"{_dataset_text(first['dataset'])}, NSD tolerance "
                   f"{first['tolerance_mm']:g} mm")
        if first.get("organs_left_out"):
            caption += f"; left out: {', '.join(first['organs_left_out'])} (whole organs)"
        if ia:
            caption += ("; 'two annotators' is their agreement with each other "
                        f"({', '.join(ia.extra.get('annotators', []))}); 'ok': the grid keeps at "
                        "least the annotators' Dice, '**below**': it loses more than two experts "
                        "disagree")
        out.append((caption, tabulate(rows, headers=headers, tablefmt="github",
                                      disable_numparse=True)))
    return out


def _label(r: Record, scored: Any) -> str:
    """A trained row's method; one scored on other cases than the caption's says so."""
    cases = r.extra["dataset"].get("cases")
    return r.extra["display"] + (f", {cases} cases" if cases != scored else "")


def trained_tables(records: Sequence[Record]) -> list[tuple[str, str]]:
    recs = [r for r in records if r.extra.get("kind") == "trained"]
    out = []
    for name in dict.fromkeys(r.extra["dataset"]["name"] for r in recs):
        mine = [r for r in recs if r.extra["dataset"]["name"] == name]
        eager = {(r.extra["method"], r.extra["path"], other_budget(r)): r for r in mine
                 if r.runtime == "eager" and r.ok}
        first = mine[0].extra
        scored = first["dataset"].get("cases")

        rows = []
        for r in mine:
            e = eager.get((r.extra["method"], r.extra["path"], other_budget(r)))
            drop = (r.extra["mean_dice"] - e.extra["mean_dice"]) if (r.ok and e) else None
            t = r.extra.get("training", {})
            rows.append([_label(r, scored), r.extra["path"], r.runtime,
                         _num(r.extra.get("mean_dice")) if r.ok else DASH,
                         _num(r.extra.get("mean_nsd")) if r.ok else DASH,
                         f"{drop:+.3f}" if drop is not None else DASH,
                         _num(r.extra.get("dice_vs_eager")) if r.ok else DASH,
                         _training_text(t, r.extra.get("core_minutes")),
                         r.status if r.ok else f"{r.status}: {r.reason}"])
        budget = first.get("training", {}).get("budget", "?")
        out.append((f"Trained on real CT, scored per organ against manual labels: "
                    f"{_dataset_text(first['dataset'])}; each network trained from random "
                    f"init with {budget} (a row naming its core-minutes: another budget); "
                    f"NSD tolerance {first['tolerance_mm']:g} mm",
                    tabulate(rows, headers=["method", "path", "runtime", "Dice", "NSD",
                                            "Dice vs its eager", "labels vs eager (Dice)",
                                            "training", "status"],
                             tablefmt="github", disable_numparse=True)))
        ok = [r for r in mine if r.ok and r.runtime == "eager"]
        organs = sorted({o for r in ok for o in r.extra["organs"]})
        rows = [[f"{_label(r, scored)}, {r.extra['path']}"]
                + [_pair(r.extra["organs"].get(o)) for o in organs] for r in ok]
        if ok:
            out.append((f"Per organ, FP32 eager (Dice / NSD), {_dataset_text(first['dataset'])}",
                        tabulate(rows, headers=["method, path", *organs], tablefmt="github",
                                 disable_numparse=True)))
    return out


def other_rows(records: Sequence[Record]) -> list[tuple[str, str]]:
    """Rows no other table shows (a ceiling that failed, an unknown kind), with their reason."""
    shown = [r for r in records if (r.extra.get("kind") == "trained")
             or (r.ok and r.extra.get("kind") in ("ceiling", "inter_annotator"))]
    rest = [r for r in records if r not in shown]
    if not rest:
        return []
    rows = [[r.extra.get("display", r.model), r.runtime,
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
    rows = {r.extra.get("path"): r for r in records
            if r.ok and r.extra.get("kind") == "trained" and r.runtime == "eager"
            and r.extra.get("method") == "2d-champion"
            and not other_budget(r)}
    if "lowres" not in rows or "full" not in rows:
        return None
    low, full = rows["lowres"].extra, rows["full"].extra
    return {"dataset": _dataset_text(low["dataset"]),
            "budget": low.get("training", {}).get("budget", "?"),
            "lowres": {"dice": low["mean_dice"], "nsd": low["mean_nsd"]},
            "full": {"dice": full["mean_dice"], "nsd": full["mean_nsd"]},
            "cost": full["mean_dice"] - low["mean_dice"]}


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
        if r.ok and r.extra.get("kind") in ("ceiling", "inter_annotator"):
            by_set.setdefault(r.extra["dataset"]["name"], []).append(r)
    grids = list(dict.fromkeys(r.extra["display"] for recs in by_set.values() for r in recs
                               if r.extra["kind"] == "ceiling"))
    rows = []
    for name, recs in by_set.items():
        ia = next((r for r in recs if r.extra["kind"] == "inter_annotator"), None)
        row = [name, _pair({"dice": ia.extra["mean_dice"], "nsd": ia.extra["mean_nsd"]})
               if ia else DASH]
        for grid in grids:
            r = next((r for r in recs if r.extra["kind"] == "ceiling"
                      and r.extra["display"] == grid), None)
            if r is None:
                row.append(DASH)
                continue
            cell = _pair({"dice": r.extra["mean_dice"], "nsd": r.extra["mean_nsd"]})
            if ia is not None:
                below = [o for o, v in r.extra["organs"].items() if o in ia.extra["organs"]
                         and v["dice"] < ia.extra["organs"][o]["dice"]]
                cell += f", {len(below)}/{len(r.extra['organs'])} below"
            row.append(cell)
        rows.append(row)
    if rows:
        out.append(("Best mean Dice / NSD each output grid can keep (no network); 'below': "
                    "organs where it keeps less than two annotators agree",
                    tabulate(rows, headers=["data set", "two annotators", *grids],
                             tablefmt="github", disable_numparse=True)))
    trained = [r for r in records if r.extra.get("kind") == "trained" and not other_budget(r)]
    rows = []
    for r in trained:
        if not (r.ok and r.runtime == "eager"):
            continue
        others = [o for o in trained if o.ok and o.extra.get("method") == r.extra["method"]
                  and o.extra.get("path") == r.extra["path"] and o.runtime != "eager"]
        worst = min(others, key=lambda o: o.extra["mean_dice"], default=None)
        drop = (f"{worst.extra['mean_dice'] - r.extra['mean_dice']:+.3f} (`{worst.runtime}`)"
                if worst else DASH)
        rows.append([r.extra["display"], r.extra["path"],
                     _pair({"dice": r.extra["mean_dice"], "nsd": r.extra["mean_nsd"]}), drop,
                     str(r.extra.get("training", {}).get("steps", DASH))])
    if rows:
        first = trained[0].extra
        out.append((f"Trained on real CT ({_dataset_text(first['dataset'])}; "
                     f"{first.get('training', {}).get('budget', '?')} each), FP32 eager",
                     tabulate(rows, headers=["method", "path", "Dice / NSD",
                                             "worst runtime's Dice change", "steps"],
                              tablefmt="github", disable_numparse=True)))
    return out
