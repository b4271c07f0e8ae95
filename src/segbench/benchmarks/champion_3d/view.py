"""How the champion_3d benchmark is shown: the search table (seconds per CT by stage, FLOPs per
CT and the share of this CPU's measured peak, Dice against the FP32 eager labels of the tool's
settings), the answer (2D champion, 3D champion, the real TotalSegmentator, one run), the tile
counts per step, the peer rows. Results only: no torch, no engine."""

from __future__ import annotations

from typing import Any, Sequence

from tabulate import tabulate

from segbench import fields, tiling
from segbench.benchmarks.whole_ct.view import (
    _gib,
    _secs,
    peer_tables,
    seconds_per_ct,
    stage_seconds,
    tool_seconds,
)
from segbench.catalogue import TOTALSEG_FAST

# the 2D champion's rule and peak probes serve the 3D search too: the winner is the fastest row
# within DICE_TOLERANCE of the reference; peaks() is the best probe per precision
from segbench.champion import DICE_TOLERANCE, peaks
from segbench.results import Record
from segbench.tables import DASH

TARGET_VS_TOOL = 5.0  # issue #26: at least 5x faster per CT than the tool --fast --ml
STEPS = (0.5, 0.8, 1.0)
TOOL_KEY = "tool"  # the variant with the tool's own settings (the reference's pipeline)


def search_records(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if str(r.extra.get(fields.METHOD, "")).startswith("3d-")]


def reference(records: Sequence[Record]) -> Record | None:
    return next((r for r in search_records(records) if r.extra.get(fields.REFERENCE_ROW)), None)


def dice_vs_reference(r: Record) -> float | None:
    if r.extra.get(fields.REFERENCE_ROW):
        return 1.0 if r.ok else None
    return r.extra.get(fields.DICE_VS_EAGER)


def qualifies(r: Record) -> bool:
    d = dice_vs_reference(r)
    return bool(r.ok and seconds_per_ct(r) and d is not None and d >= 1.0 - DICE_TOLERANCE)


def champion(records: Sequence[Record]) -> Record | None:
    """The fastest candidate whose labels stay within DICE_TOLERANCE of the reference's."""
    ok = [r for r in search_records(records) if qualifies(r)]
    return min(ok, key=seconds_per_ct) if ok else None


def gflop_per_ct(r: Record) -> float | None:
    passes = r.extra.get(fields.PASSES)
    return r.gflops * passes if r.gflops and passes else None


def network_rate(r: Record) -> float | None:
    """GFLOP/s of the network stage: FLOPs of every pass / the loop's network seconds."""
    flops, net = gflop_per_ct(r), (r.extra.get(fields.STAGES_S) or {}).get("predict")
    return flops / net if flops and net else None


def share_of_peak(r: Record, peak: dict[str, float]) -> str:
    rate, top = network_rate(r), peak.get(r.extra.get(fields.PRECISION, ""))
    return f"{rate / top:.0%}" if rate and top else DASH


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.1f}x" if a and b else DASH


def _agree(r: Record) -> str:
    a = r.extra.get(fields.AGREEMENT_VS_EAGER)
    return DASH if a is None else f"{a:.2f} %"


def _stage(r: Record, col: str) -> str:
    v = stage_seconds(r).get(col)
    return DASH if v is None else _secs(v)


SEARCH_HEADERS = ["stage", "pipeline", "runtime", "s / CT", "preprocess", "network", "blend",
                  "argmax + back", "network passes", "GFLOP / CT", "network GFLOP/s",
                  "share of peak", "peak RSS", "Dice vs FP32 eager (tool settings)",
                  "voxels agreeing",
                  "faster than the tool --fast --ml", "status"]


def search_rows(records: Sequence[Record]) -> list[list[str]]:
    peak, tool, best = peaks(records), tool_seconds(records), champion(records)
    rows = []
    ranked = sorted(search_records(records),
                    key=lambda r: (seconds_per_ct(r) is None, seconds_per_ct(r) or 0))
    for r in ranked:
        s = seconds_per_ct(r)
        d = dice_vs_reference(r)
        back = sum(stage_seconds(r).get(c, 0.0) for c in ("argmax", "resample back"))
        how = r.extra.get(fields.HOW, "")
        if r.extra.get(fields.OPTIONS):
            how += " (" + ", ".join(f"{k}={v}" for k, v in r.extra[fields.OPTIONS].items()) + ")"
        mark = " **3D champion**" if best is not None and r.key == best.key else ""
        flops = gflop_per_ct(r)
        rate = network_rate(r)
        rows.append([
            r.extra.get(fields.STAGE, ""), how + mark, r.runtime, _secs(s),
            _stage(r, "preprocess"), _stage(r, "network"), _stage(r, "blend"),
            _secs(back) if r.ok and r.extra.get(fields.STAGES_S) else DASH,
            str(r.extra.get(fields.PASSES, DASH)), DASH if flops is None else f"{flops:.0f}",
            DASH if rate is None else f"{rate:.0f}", share_of_peak(r, peak),
            _gib(r.extra.get(fields.LOOP_PEAK_RSS_BYTES)),
            DASH if d is None else f"{d:.3f}", _agree(r), _ratio(s, tool),
            "ok" if r.ok else f"{r.status}: {r.reason}"])
    return rows


ANSWER_HEADERS = ["pipeline (same run, same CT)", "runtime", "s / CT", "vs the tool",
                  "quality"]


def answer_rows(records: Sequence[Record]) -> list[list[str]]:
    tool = tool_seconds(records)
    ref, best = reference(records), champion(records)
    rows = []
    if tool:
        rows.append(["the real TotalSegmentator --fast --ml, as shipped", "PyTorch eager",
                     _secs(tool), "1.0x", "speed only (random weights)"])
    if ref is not None and ref.ok:
        rows.append(["own --fast pipeline, the tool's settings", ref.runtime,
                     _secs(seconds_per_ct(ref)), _ratio(seconds_per_ct(ref), tool),
                     "the reference labels"])
    if best is not None:
        d = dice_vs_reference(best)
        rows.append([f"3D champion: {best.extra.get(fields.HOW, '')}", best.runtime,
                     _secs(seconds_per_ct(best)), _ratio(seconds_per_ct(best), tool),
                     f"Dice {d:.3f} vs reference"])
    for two in two_d(records):
        rows.append([fields.title(two), two.runtime,
                     _secs(seconds_per_ct(two)), _ratio(seconds_per_ct(two), tool),
                     "speed only (random weights)"])
    return rows


def two_d_source(records: Sequence[Record]) -> str:
    """The champion results file the 2D rows' recipe was read from."""
    return next((r.extra.get(fields.SOURCE, "") for r in two_d(records)), "")


def two_d(records: Sequence[Record]) -> list[Record]:
    """The 2D champion's rows of the run (the champion, then its exact-path twin)."""
    return [r for r in records if str(r.extra.get(fields.METHOD, "")).startswith("2d-") and r.ok]


def step_rows(records: Sequence[Record]) -> list[list[str]]:
    """Tiles per step of the plan's patch on the grid the run saw (tile arithmetic only)."""
    r = reference(records)
    if r is None or not r.extra.get(fields.GRID):
        return []
    grid = tuple(r.extra[fields.GRID])
    patch = tuple((r.extra.get(fields.PIPELINE) or {}).get("patch") or TOTALSEG_FAST.patch)
    return [[f"{step}", "x".join(map(str, grid)), "x".join(map(str, patch)),
             str(tiling.tile_count(grid, patch, step))] for step in STEPS]


def limits(r: Record, peak: dict[str, float]) -> str:
    """What the loop spends its time on: each stage's share, and the network's share of the
    peak of its precision."""
    total = seconds_per_ct(r) or 0.0
    stages = sorted(stage_seconds(r).items(), key=lambda kv: -kv[1])
    if not total or not stages:
        return "no stage breakdown"
    parts = ", ".join(f"{name} {sec / total:.0%}" for name, sec in stages if sec / total >= 0.05)
    share = share_of_peak(r, peak)
    return (f"its loop: {parts}" + ("" if share == DASH else
                                    f", the network at {share} of the "
                                    f"{r.extra.get(fields.PRECISION, '')} peak"))


def floor_seconds(r: Record, peak: dict[str, float]) -> float | None:
    """Seconds the row's network FLOPs would take at the full measured peak of its precision:
    no pipeline of that precision and tiling gets below it on this CPU."""
    flops, top = gflop_per_ct(r), peak.get(r.extra.get(fields.PRECISION, ""))
    return flops / top if flops and top else None


def short_of_target(best: Record, records: Sequence[Record], tool: float,
                    short: bool = False) -> str:
    """Why the target is out of reach: the stages, the floor of the champion's precision, and
    (unless ``short``) the fastest row that was faster but moved the labels."""
    peak = peaks(records)
    text = f"short of {TARGET_VS_TOOL:.0f}x; {limits(best, peak)}"
    floor = floor_seconds(best, peak)
    if floor:
        text += (f"; even at 100% of that peak its network would take {floor:.0f} s, and "
                 f"{TARGET_VS_TOOL:.0f}x needs {tool / TARGET_VS_TOOL:.0f} s per CT")
    faster = [] if short else [r for r in search_records(records) if r.ok and not qualifies(r)
              and (seconds_per_ct(r) or 1e9) < (seconds_per_ct(best) or 0)]
    if faster:
        f = min(faster, key=lambda r: seconds_per_ct(r) or 0.0)
        text += (f"; the fastest row that moved the labels: {f.runtime}, "
                 f"{f.extra.get(fields.HOW, '')}, {_secs(seconds_per_ct(f))} s "
                 f"(Dice {dice_vs_reference(f) or 0:.3f})")
    return text


def headline(records: Sequence[Record], short: bool = False) -> str:
    """One line: both champions and the tool, one run (``short``: for the README)."""
    tool, best = tool_seconds(records), champion(records)
    two = next(iter(two_d(records)), None)
    if best is None:
        return ""
    b = seconds_per_ct(best)
    text = (f"3D champion {_secs(b)} s per CT ({best.runtime}, {best.extra.get(fields.HOW, '')}, "
            f"Dice {dice_vs_reference(best):.3f})")
    if tool:
        ratio = tool / b
        text += (f", {ratio:.1f}x the real TotalSegmentator --fast --ml"
                 + ("" if ratio >= TARGET_VS_TOOL else
                    f": {short_of_target(best, records, tool, short)}"))
    if two is not None:
        text += f". The 2D champion is {b / seconds_per_ct(two):.1f}x faster than the 3D one"
    return text + "."


def tables(view: Any, results: Any) -> list[tuple[str, str]]:
    records = results.records
    out = []
    line = headline(records)
    answer = answer_rows(records)
    if answer:
        out.append(("The answer, both sides searched (one run)" + (f": {line}" if line else ""),
                    tabulate(answer, headers=ANSWER_HEADERS, tablefmt="github")))
    out.append(("The 3D search: TotalSegmentator --fast's network, whole CT, fastest first "
                f"(champion: fastest within {DICE_TOLERANCE} Dice of FP32 eager; the options "
                "in brackets are runtime options)",
                tabulate(search_rows(records), headers=SEARCH_HEADERS, tablefmt="github")))
    steps = step_rows(records)
    if steps:
        out.append(("Tile step is no knob on this CT: tiles per step",
                    tabulate(steps, headers=["step", "3 mm grid", "patch", "tiles"],
                             tablefmt="github")))
    peak = peaks(records)
    if peak:
        out.append(("Peak probes (GFLOP/s per precision, this run)",
                    tabulate([[k, f"{v:.0f}"] for k, v in sorted(peak.items())],
                             headers=["precision", "GFLOP/s"], tablefmt="github")))
    out += peer_tables(records)
    searched = {r.key for r in search_records(records)}
    failed = [[fields.title(r), r.runtime, f"{r.status}: {r.reason}"]
              for r in records if not r.ok and r.key not in searched and r.family != "peer"]
    if failed:  # a 2D champion or probe row that did not run still says why
        out.append(("Other rows that did not run", tabulate(
            failed, headers=["row", "runtime", "status"], tablefmt="github")))
    return out
