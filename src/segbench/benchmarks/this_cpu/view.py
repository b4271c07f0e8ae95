"""The this_cpu table: seconds per whole CT and per slice measured here, quality quoted.

Speed comes from this run (random weights). The quality columns come from other results
files in the same results folder, each named under the table with its machine: Dice against
the phantom's truth from ``whole_ct`` (trained on phantoms) and Dice / NSD against manual
labels of real CTs from ``real_ct`` (trained on real scans at an equal CPU budget). A quality
number depends on the weights and the runtime's arithmetic, not on how fast the CPU is, so a
file of another machine answers for it; a time is never taken from another file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from segbench import fields
from segbench.champion import COARSE_PATHS, DICE_TOLERANCE
from segbench.realct.view import other_budget
from segbench.results import Record, ResultsFile, full_results_this_machine_first

DASH = "–"
ORDER = ("original", "champion", "champion-exact", "3d-fast")
# this_cpu's pipeline -> (whole_ct method, real_ct method)
WHOLE_CT_METHOD = {"original": "2d-original", "champion": "2d-best", "3d-fast": "totalseg-fast"}
REAL_CT_METHOD = {"original": "2d-original", "champion": "2d-champion",
                  "champion-exact": "2d-champion", "3d-fast": "3d-fast"}
_ROOT = Path(__file__).resolve().parents[4]  # the repository (cli.default_results_dir's rule)
DEFAULT_RESULTS = _ROOT / "results" if (_ROOT / "pyproject.toml").exists() else Path("results")


def _seconds(r: Record) -> float | None:
    if not r.ok or not r.timing:
        return None
    return r.timing["latency_p50_ms"] / 1e3


def _secs(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def phantom_quality(files: Sequence[ResultsFile], key: str, runtime: str
                    ) -> tuple[str, ResultsFile | None]:
    """Dice on the phantom CT of the same pipeline and runtime in a whole_ct run."""
    method = WHOLE_CT_METHOD.get(key)
    for f in files:
        for r in f.records:
            if (r.ok and not r.quick and r.extra.get(fields.METHOD) == method
                    and r.runtime == runtime and r.extra.get(fields.DICE) is not None
                    and not (method == "2d-best" and r.extra.get(fields.STAND_IN))):
                text = f"{r.extra[fields.DICE]:.3f}"
                if r.extra.get(fields.DICE_VS_EAGER) is not None:
                    text += f" ({r.extra[fields.DICE_VS_EAGER]:.3f} vs its FP32)"
                return text, f
    return DASH, None


def _real_path(key: str, path: str) -> str:
    if key == "3d-fast":
        return "nearest"
    return path if path in COARSE_PATHS else "full"  # exact paths give full's labels


def real_quality(files: Sequence[ResultsFile], key: str, path: str, runtime: str,
                 network: str) -> tuple[dict[str, float] | None, str, ResultsFile | None]:
    """(Dice / NSD, note, file) of the same network, method and output path on real CT, under
    the same runtime where that run has it, else FP32 eager (noted)."""
    method, want = REAL_CT_METHOD.get(key), _real_path(key, path)
    for f in files:
        rows = {r.runtime: r for r in f.records
                if r.ok and not r.quick and r.extra.get(fields.KIND) == "trained"
                and r.extra.get(fields.METHOD) == method and r.extra.get(fields.PATH) == want
                and r.extra.get(fields.NETWORK, network) == network
                and not other_budget(r)}  # the equal-budget comparison's rows
        r = rows.get(runtime) or rows.get("eager")
        if r is not None:
            note = "" if r.runtime == runtime else f" ({r.runtime})"
            if want != path and key != "3d-fast":
                note += f" (path {want}: same labels)"
            return {"dice": r.extra[fields.MEAN_DICE], "nsd": r.extra[fields.MEAN_NSD]}, note, f
    return None, "", None


def _machine(f: ResultsFile) -> str:
    from segbench.machine import describe

    return describe(f.machine)


def latest_run(recs: list[Record]) -> list[Record]:
    """Per pipeline, the rows of its newest run only (the rows sharing the commit of its newest
    row): a run that picks another runtime than an earlier one does not leave the earlier
    runtime's row, timed by other code on another day, in the same table."""
    newest: dict[str, Record] = {}
    for r in recs:
        key = r.extra[fields.METHOD]
        if key not in newest or r.date > newest[key].date:
            newest[key] = r
    return [r for r in recs if r.commit == newest[r.extra[fields.METHOD]].commit]


def tables(bench: Any, results: ResultsFile) -> list[tuple[str, str]]:
    from segbench import machine

    recs = latest_run([r for r in results.records if r.extra.get(fields.METHOD) in ORDER])
    if not recs:
        return [("", "No pipeline ran.")]
    recs.sort(key=lambda r: (ORDER.index(r.extra[fields.METHOD]), _seconds(r) or 1e9))
    results_dir = (results.path.parent.parent if results.path is not None
                   else DEFAULT_RESULTS)
    slug = results.path.stem if results.path is not None else machine.slug()
    whole = full_results_this_machine_first(results_dir, "whole_ct", slug)
    real = full_results_this_machine_first(results_dir, "real_ct", slug)
    base = next((_seconds(r) for r in recs if r.extra[fields.METHOD] == "original" and _seconds(r)),
                None)
    rows, used, verdict = [], {}, []
    for r in recs:
        sec = _seconds(r)
        pipe = r.extra.get(fields.PIPELINE) or {}
        slices = (r.extra.get(fields.CT_SHAPE) or [0])[0]
        ph, ph_file = phantom_quality(whole, r.extra[fields.METHOD], r.runtime)
        rq, note, rq_file = real_quality(real, r.extra[fields.METHOD], pipe.get("path", ""),
                                         r.runtime, r.name or r.model)
        for f in (ph_file, rq_file):
            if f is not None:
                used[f.path.parent.name] = f
        if sec is None:
            rows.append([fields.title(r), f"`{r.runtime}`", DASH, DASH, DASH,
                         ph, DASH, f"{r.status}: {r.reason}"])
            continue
        rows.append([fields.title(r), f"`{r.runtime}`", _secs(sec),
                     f"{sec * 1000 / slices:.1f}" if slices else DASH,
                     f"{base / sec:.1f}x" if base else DASH, ph,
                     f"{rq['dice']:.3f} / {rq['nsd']:.3f}{note}" if rq else DASH, "ok"])
        if rq is not None:
            verdict.append((sec, rq["dice"], r))
    ct = next((r.extra for r in recs if r.extra.get(fields.CT_SHAPE)), {})
    shape = "x".join(map(str, (ct.get(fields.CT_SHAPE) or [])[::-1]))
    phantom = str(ct.get(fields.CT_SOURCE, "phantom")).startswith("phantom")
    caption = (f"Seconds per whole CT ({'a ' + shape + ' ' if shape else ''}"
               f"{'phantom' if phantom else ''}"
               f" CT, HU in, labels out, one loop after a warm-up pass, random weights: speed "
               f"does not depend on them), measured on {_machine(results)}")
    headers = ["pipeline", "runtime", "s / CT", "ms / slice", "speed-up vs original",
               "Dice, phantom CT", "Dice / NSD, real CT", "status"]
    out = [(caption, tabulate(rows, headers=headers, tablefmt="github",
                              disable_numparse=True))]
    notes = []
    if "whole_ct" in used:
        notes.append(f"Dice, phantom CT: the whole_ct run on {_machine(used['whole_ct'])} "
                     "(networks trained on phantoms; a 3D network there is barely trained).")
    if "real_ct" in used:
        f = used["real_ct"]
        ds = next((r.extra[fields.DATASET] for r in f.records
                   if r.extra.get(fields.KIND) == "trained"), {})
        budget = next((r.extra.get(fields.TRAINING, {}).get("budget") for r in f.records
                       if r.extra.get(fields.KIND) == "trained"), "?")
        notes.append(f"Dice / NSD, real CT: the real_ct run on {_machine(f)}: "
                     f"{ds.get('name', '?')}, {ds.get('cases', '?')} test cases, each network "
                     f"trained from random init for {budget}.")
    if verdict:
        best = max(d for _, d, _ in verdict)
        ok = [(s, d, r) for s, d, r in verdict if d >= best - DICE_TOLERANCE]
        s, d, r = min(ok, key=lambda item: item[0])
        notes.append(f"**Use on this CPU:** {fields.title(r)} under "
                     f"`{r.runtime}`: {_secs(s)} s per CT, the fastest pipeline within "
                     f"{DICE_TOLERANCE} Dice of the best on real CT ({d:.3f} against {best:.3f}).")
    elif not real:
        notes.append("No real_ct results here: quality on real anatomy is unknown (run "
                     "benchmarks/real_ct/benchmark.py with a labelled data set).")
    out.append(("", "\n".join(f"- {n}" for n in notes) if notes else ""))
    return out
