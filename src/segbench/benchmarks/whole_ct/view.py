"""The whole_ct benchmark's view: the per-CT table (seconds per CT by stage, peak memory,
quality), the loop-vs-estimate check, the real TotalSegmentator's rows beside them, the stage
plot and the README's per-CT line. Reads records and the method catalogue only."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from segbench import fields
from segbench.catalogue import (
    BUDGET,
    CHAMPION_TITLE,
    METHODS,
    NNUNET_DEFAULTS,
    STAND_IN_TITLE,
    Pipeline,
)
from segbench.fidelity import TRAINED_DICE_FLOOR
from segbench.results import Record
from segbench.runtimes import REFERENCE
from segbench.tables import DASH, num


def row_title(r: Record) -> str:
    """What a row ran, as tables name it. A 2d-best row is the champion's only if it was run as
    the champion: a stand-in (or an older record of one, titled "2D best pipeline") never
    reads as the champion."""
    title = fields.title(r)
    if r.extra.get(fields.METHOD) == "2d-best" and not (
            title.startswith(CHAMPION_TITLE) or title.startswith(STAND_IN_TITLE)):
        title = f"{STAND_IN_TITLE} ({r.model})"
    return title



# --------------------------------------------------------------------------------------------
# Tables

STAGE_COLUMNS = (("preprocess", ("resample", "normalise", "window")), ("network", ("predict",)),
                 ("blend", ("accumulate",)), ("argmax", ("argmax",)),
                 ("resample back", ("resample back",)))


# Stages a CT needs once however many networks run on it: TotalSegmentator resamples the CT to
# 1.5 mm once, runs its five part networks on that grid, and resamples the combined label map
# back once. Normalising, the network passes, blending and argmax happen once per network.
ONCE_PER_CT = ("resample", "resample back")


def _stage_factor(r: Record, stage: str) -> int:
    return 1 if stage in ONCE_PER_CT else r.extra.get(fields.NETWORKS, 1)


def seconds_per_ct(r: Record) -> float | None:
    """The measured loop (median of the timed loops) for one network, plus the per-network
    stages of the last loop for each further network it stands for (the once-per-CT stages
    are not repeated)."""
    if not r.ok or not r.timing:
        return None
    loop = r.timing["latency_p50_ms"] / 1e3
    stages = r.extra.get(fields.STAGES_S) or {}
    return loop + sum((_stage_factor(r, s) - 1) * v for s, v in stages.items())


def stage_seconds(r: Record) -> dict[str, float]:
    stages = r.extra.get(fields.STAGES_S) or {}
    return {col: sum(stages.get(s, 0.0) * _stage_factor(r, s) for s in parts)
            for col, parts in STAGE_COLUMNS if any(s in stages for s in parts)}


def _find(records: Sequence[Record], method: str, runtime: str) -> Record | None:
    return next((r for r in records if r.extra.get(fields.METHOD) == method
                 and r.runtime == runtime), None)


def quality_text(r: Record, short: bool = False) -> str:
    """A whole-CT row's quality: Dice against the phantom's truth (and against its own FP32
    eager labels), or for random weights the share of voxels agreeing with that loop.
    ``short``: the README answer's wording (the whole_ct page says it in full)."""
    if not r.ok:
        return DASH
    if r.extra.get(fields.DICE) is not None:
        text = f"Dice {r.extra[fields.DICE]:.3f}"
        # too little trained for its Dice to say how good the method is (the 3D --fast
        # network gets minutes of training here, nnU-Net's gets days)
        if r.extra[fields.DICE] < TRAINED_DICE_FLOOR:
            text += " (barely trained)" if short else (
                " (barely trained: compares runtimes, not methods)")
        if r.extra.get(fields.DICE_VS_EAGER) is not None:
            vs = r.extra[fields.DICE_VS_EAGER]
            text += f"; {vs:.3f} vs its FP32" if short else f" (vs eager {vs:.3f})"
        return text
    agree = r.extra.get(fields.AGREEMENT_VS_EAGER)
    if agree is None:
        return "no FP32 eager loop to compare"
    return f"{agree:.2f} % agree{' with its FP32' if short else ''} (random weights)"


KEEPS_OUTPUT = 0.9  # Dice with, or share of voxels agreeing with, the method's own FP32 loop


def keeps_output(r: Record) -> bool:
    """Whether a runtime's label volume stays close to the same network's FP32 eager loop (the
    only quality evidence when the network itself is barely trained or random)."""
    if r.runtime == REFERENCE:
        return True
    if r.extra.get(fields.DICE_VS_EAGER) is not None:
        return r.extra[fields.DICE_VS_EAGER] >= KEEPS_OUTPUT
    agree = r.extra.get(fields.AGREEMENT_VS_EAGER)
    return agree is None or agree >= 100 * KEEPS_OUTPUT


def _gib(n: int | None) -> str:
    return DASH if not n else (f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB")


def _secs(x: float | None) -> str:
    return DASH if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


# The real TotalSegmentator --fast --ml as shipped (segbench.peers, ``--peers``): the record
# every method's "vs the tool" ratio divides by, when the same run has it.
PEER_FAST_KEY = "peer:totalsegmentator:fast:ml"


def tool_seconds(records: Sequence[Record]) -> float | None:
    """Median seconds of the real TotalSegmentator --fast --ml command in these records."""
    peer = next((r for r in records if r.key == PEER_FAST_KEY), None)
    if peer is None or not peer.ok or not peer.timing:
        return None
    return peer.timing.get("median_s")


def per_ct_rows(records: Sequence[Record]) -> list[list[str]]:
    base = _find(records, "2d-original", "ort-fp32")
    fast = _find(records, "totalseg-fast", REFERENCE)
    base_s = seconds_per_ct(base) if base else None
    fast_s = seconds_per_ct(fast) if fast else None
    tool_s = tool_seconds(records)
    rows = []
    order = {m.key: i for i, m in enumerate(METHODS)}
    loops = [r for r in records if r.family != "peer"]  # the peer has its own table
    for r in sorted(loops, key=lambda r: (order.get(r.extra.get(fields.METHOD), 99),
                                 seconds_per_ct(r) or math.inf)):
        sec = seconds_per_ct(r)
        stages = stage_seconds(r)
        status = "ok" if r.ok else f"{r.status}: {r.reason}"
        if r.ok and r.extra.get(fields.NETWORKS, 1) > 1:
            status = (f"ok; one of {r.extra[fields.NETWORKS]} networks timed, its per-network "
                      "stages counted for each")
        if r.extra.get(fields.CT_UNUSUAL):
            status += "; unusual CT: " + "; ".join(r.extra[fields.CT_UNUSUAL])
        rows.append([row_title(r), r.runtime, r.extra.get(fields.NOTE, ""),
                     _secs(sec), *(_secs(stages.get(col)) for col, _ in STAGE_COLUMNS),
                     _gib(r.extra.get(fields.LOOP_PEAK_RSS_BYTES)), quality_text(r),
                     num(sec / base_s, 2) + "x" if sec and base_s else DASH,
                     num(sec / fast_s, 2) + "x" if sec and fast_s else DASH,
                     num(sec / tool_s, 2) + "x" if sec and tool_s else DASH, status])
    present = {(r.extra.get(fields.METHOD), r.runtime) for r in records}
    full = {r.extra.get(fields.METHOD) for r in records if not r.quick}
    for m in METHODS:
        if m.key in full:
            for rt in m.not_run:
                if (m.key, rt) not in present:
                    rows.append([m.title, rt, m.note, *[DASH] * (len(STAGE_COLUMNS) + 6),
                                 BUDGET])
    return rows


PER_CT_HEADERS = ["method", "runtime", "how", "s / CT (loop)",
                  *(f"{col} s" for col, _ in STAGE_COLUMNS), "peak RSS (loop)", "quality",
                  "vs 2D original", "vs --fast eager", "vs the real tool --fast", "status"]


def estimate_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if not r.ok or r.extra.get(fields.ESTIMATE_S) is None:
            continue
        k = r.extra.get(fields.NETWORKS, 1)
        measured = seconds_per_ct(r)  # the per-CT table's figure, not the loop times k
        est = r.extra[fields.ESTIMATE_S]  # passes x isolated pass, one network
        predict = (r.extra.get(fields.STAGES_S) or {}).get("predict")
        passes = r.extra.get(fields.PASSES)
        rows.append([row_title(r), r.runtime,
                     f"{passes} x {k} networks" if k > 1 else passes,
                     _secs(r.extra.get(fields.SECONDS_PER_PASS)), _secs(est * k), _secs(measured),
                     num(measured / (est * k), 2) if est and measured else DASH,
                     num(predict / est, 2) if predict and est else DASH])
    rows += nnunet_defaults_rows(records)
    return rows


def nnunet_defaults_rows(records: Sequence[Record]) -> list[list[str]]:
    """nnU-Net's defaults (step 0.5, 8 mirrored passes per tile) on the part network's grid:
    an estimate from the measured pass of the TotalSegmentator default cells."""
    key, step, mirror = NNUNET_DEFAULTS
    rows = []
    for r in records:
        if (r.extra.get(fields.METHOD) != key or not r.ok
                or r.extra.get(fields.SECONDS_PER_PASS) is None):
            continue
        pipe = Pipeline.from_dict(r.extra[fields.PIPELINE])
        pipe = replace(pipe, step=step, mirror=mirror)
        passes = pipe.passes(r.extra[fields.CT_SHAPE], r.extra[fields.CT_SPACING])
        est = passes * r.extra[fields.SECONDS_PER_PASS]
        rows.append([f"nnU-Net defaults (ESTIMATE: step {step}, 8x mirroring, one network)",
                     r.runtime, passes, _secs(r.extra[fields.SECONDS_PER_PASS]), _secs(est), DASH,
                     DASH, DASH])
    return rows


ESTIMATE_HEADERS = ["method", "runtime", "network passes", "s / pass (isolated)",
                    "passes x s / pass", "measured per CT (s)", "measured / estimate",
                    "network stage / estimate"]


def tables(bench: Any, results: Any) -> list[tuple[str, str]]:
    records = list(results.records)
    ct = next((r.extra for r in records if r.extra.get(fields.CT_SOURCE)), {})
    shape = "x".join(map(str, ct.get(fields.CT_SHAPE, [])[::-1]))
    spacing = " x ".join(f"{s:g}" for s in ct.get(fields.CT_SPACING, [])[::-1])
    where = (f"{ct.get(fields.CT_SOURCE)}, {shape} voxels (x, y, z) at {spacing} mm"
             if ct else "")
    loops = {r.protocol.get("repeats") for r in records if r.protocol}
    warm = sorted({r.extra.get(fields.WARMUP) for r in records if r.extra.get(fields.WARMUP)})
    title = (f"Per whole CT ({where}): each pipeline timed as a real loop "
             f"({'/'.join(map(str, sorted(loops)))} timed loop(s) after a warm-up of "
             f"{' or '.join(warm)})")
    out = [(title, tabulate(per_ct_rows(records), headers=PER_CT_HEADERS, tablefmt="github",
                            disable_numparse=True))]
    est = estimate_rows(records)
    if est:
        out.append(("Check: measured loop vs network passes x isolated s / pass", tabulate(
            est, headers=ESTIMATE_HEADERS, tablefmt="github", disable_numparse=True)))
    return out + peer_tables(records)


def stage_plot(results: Any, out: Path) -> list[Path | None]:
    from segbench.plots import stage_bars_plot

    rows = [(f"{row_title(r)} | {r.runtime}", stage_seconds(r))
            for r in results.records if r.extra.get(fields.METHOD) and r.ok and not r.quick]
    cores = results.machine.get("physical_cores", "?")
    return [stage_bars_plot(rows, out / "whole_ct_stages.png",
                            f"Seconds per whole CT by stage (measured loops), {cores} cores")]


def headline(records: Sequence[Record]) -> list[str]:
    """README summary lines: the fastest measured loop per method against the 2D baseline
    (for summary.py's per-CT paragraph; every number from the records)."""
    base = _find(records, "2d-original", "ort-fp32")
    base_s = seconds_per_ct(base) if base else None
    if not base_s:
        return []
    parts = []
    for m in METHODS:
        timed = [(seconds_per_ct(r), r) for r in records
                 if r.extra.get(fields.METHOD) == m.key and seconds_per_ct(r) and not r.quick
                 and keeps_output(r)]
        if not timed or m.key == "2d-original":
            continue
        sec, r = min(timed, key=lambda item: item[0])
        parts.append(f"{row_title(r)} {_secs(sec)} s under {r.runtime} "
                     f"({sec / base_s:.2f}x the original's time, "
                     f"{quality_text(r)})")
    if not parts:
        return []
    tool_s = tool_seconds(records)
    tool = (f" The real TotalSegmentator --fast --ml, as shipped (PyTorch eager, random "
            f"weights planted), took {tool_s:.0f} s on the same CT in the same run."
            if tool_s else "")
    return [f"**Per whole CT** (measured loops, HU volume to label volume; each method under "
            f"its fastest runtime whose labels stay within {KEEPS_OUTPUT} Dice or "
            f"{100 * KEEPS_OUTPUT:.0f} % agreement of its own FP32 eager loop): the original "
            f"2D recipe under ort-fp32 takes {base_s:.0f} s; " + "; ".join(parts) + "." + tool]


# --------------------------------------------------------------------------------------------
# The real TotalSegmentator (``--peers``, segbench.peers.whole_ct runs it)

PEER_HEADERS = ["peer (random weights, speed only)", "s per CT (runs)", "spread",
                "resample / predict / back / save / outside s", "sliding window s (tiles)",
                "peak memory GB (PSS / RSS)", "max threads (procs)", "status"]


def peer_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if r.family != "peer":
            continue
        label = fields.display(r)
        if not r.ok or not r.timing:
            rows.append([label, "", "", "", "", "", "", f"{r.status}: {r.reason}"])
            continue
        t, logged = r.timing, r.extra.get(fields.TOOL_STAGES) or {}
        stages = " / ".join(f"{logged[n]['seconds']:.1f}" if n in logged else "?"
                            for n in ("resample", "predict", "resample_back", "save",
                                      "outside_stages"))
        window = logged.get("sliding_window", {})
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
    peer = next((r for r in records if r.key == PEER_FAST_KEY), None)
    ratios = (peer.extra.get(fields.FAITHFULNESS) if peer else None) or {}
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
