"""The champion benchmark: which slice -> label map pipeline is fastest at the same quality?

One cell = one complete pipeline (network, decoder width, runtime, output path of
:mod:`segbench.labels`, slices per call) on 512x512 held-out CT phantoms: input tensor made
before the clock, output the uint8 label map, quality scored after timing by Dice against the
phantom truth (:class:`segbench.scenarios.PhantomDice`). The networks are trained on phantoms
first, in an explicit step before any cell runs.

The search is stated, not exhaustive (every row says which stage put it there):

1. ``runtimes``: the original network under every runtime with the reference path (``full``);
2. ``paths``: the other output paths under the runtimes most likely to win (``--focus``);
3. ``batch``: slices per call 4, 8, 16 under the first focus runtime, paths full and lowres;
4. ``width``: FPN widths 96 and 64, the same runtime and paths;
5. ``encoder``: the two other encoders the quantization/FPN tables put near the top, ditto;
6. ``reference``: FP32 eager ``full`` of every network of stages 4-5, the reference of its
   Dice difference.

Peak probes (one compute-bound convolution stack per precision) run in the same run, so each
row's achieved GFLOP/s can be given as a share of this CPU's practical peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tabulate import tabulate

from segbench import fields
from segbench.catalogue import pipeline_name
from segbench.data.phantom import WIDE_HEAD_ORGANS
from segbench.fidelity import TRAINED_DICE_FLOOR
from segbench.results import Record
from segbench.runtimes import REFERENCE, REGISTRY, precision_of
from segbench.tables import DASH, num, status_text

ORIGINAL = "mobilenetv4_conv_small"
BASELINE = {"network": ORIGINAL, "width": 128, "runtime": "ort-fp32", "path": "full",
            "batch": 1}
# every registered runtime, in the registry's order (the rows' order); the registry, not the
# module map that tests extend with fakes, so the list does not depend on import order
RUNTIMES = tuple(REGISTRY)
FOCUS = ("compile-int8", "openvino-int8", "openvino-bf16")
SEARCH_PATHS = ("blocked", "lowres", "corners")
# the paths of stages 4-6: the exact reference, and the cheapest (whose Dice decides)
LATER_PATHS = ("full", "lowres")
BATCHES = (4, 8, 16)
WIDTHS = (96, 64)
ENCODERS = ("regnetx_004", "resnet18")
PROBE = "conv3x3-256"
PROBE_RUNTIMES = {rt: precision_of(rt)  # runtime -> the precision whose peak it probes
                  for rt in ("compile", "compile-bf16", "compile-int8", "openvino-int8")}
STAGES = ("encoder", "upto_decoder", "upto_logits")  # timed alone on the same input
DICE_TOLERANCE = 0.01
COARSE_PATHS = ("lowres",)  # labels decided at 1/4 resolution: boundaries on a 4-pixel grid


@dataclass(frozen=True)
class Settings:
    """What a run trains and measures; ``quick`` shrinks everything to a smoke test."""

    quick: bool
    size: int
    train: dict[str, Any]
    eval_slices: int
    calibration: int
    probe_shape: tuple[int, ...]

    @classmethod
    def make(cls, quick: bool, size: int, eval_slices: int | None = None,
             calibration: int | None = None) -> "Settings":
        from segbench.train import table_recipe  # torch: not for report-only imports

        recipe = table_recipe(quick, size)
        if quick:
            return cls(True, size, recipe, eval_slices or 2, calibration or 2, (1, 3, 64, 64))
        return cls(False, size, recipe, eval_slices or 16, calibration or 16,
                   (1, 3, 128, 128))


@dataclass(frozen=True)
class Row:
    stage: str
    network: str
    width: int
    runtime: str
    path: str
    batch: int
    breakdown: bool = False  # STAGES timed alone too (Cell.submodules): its stage breakdown

    @property
    def is_baseline(self) -> bool:
        return (self.network, self.width, self.runtime, self.path, self.batch) == tuple(
            BASELINE[k] for k in ("network", "width", "runtime", "path", "batch"))


def search(quick: bool, focus: Sequence[str] = FOCUS, runtimes: Sequence[str] = RUNTIMES
           ) -> list[Row]:
    """The rows of a run, baseline first. ``--quick`` keeps one of each kind of row."""
    base = Row("baseline", ORIGINAL, 128, "ort-fp32", "full", 1, breakdown=True)
    if quick:  # no prefix timings on an exported baseline: three extra exports
        return [replace(base, breakdown=False), Row("runtimes", ORIGINAL, 128, "eager", "full", 1),
                Row("paths", ORIGINAL, 128, "eager", "corners", 1, breakdown=True)]
    rows = [base]
    rows += [Row("runtimes", ORIGINAL, 128, rt, "full", 1, breakdown=rt in focus[:1])
             for rt in runtimes if rt != "ort-fp32"]
    rows += [Row("paths", ORIGINAL, 128, rt, p, 1, breakdown=(p == "lowres"))
             for rt in focus for p in SEARCH_PATHS]
    lead = focus[:1]
    rows += [Row("batch", ORIGINAL, 128, rt, p, b)
             for rt in lead for p in LATER_PATHS for b in BATCHES]
    rows += [Row("width", ORIGINAL, w, rt, p, 1) for rt in lead for p in LATER_PATHS
             for w in WIDTHS]
    rows += [Row("encoder", e, w, rt, p, 1) for rt in lead for p in LATER_PATHS
             for e, w in ((ENCODERS[0], 128), (ENCODERS[1], 128), (ENCODERS[0], 64))]
    # every other network's FP32 eager ``full`` row: the reference of its Dice difference
    others = dict.fromkeys((r.network, r.width) for r in rows)
    rows += [Row("reference", n, w, "eager", "full", 1) for n, w in others
             if (n, w) != (ORIGINAL, 128)]
    return rows


def network_name(network: str, width: int) -> str:
    return pipeline_name(network, width)


# --- reading a run's records --------------------------------------------------------------------

def _row_of(r: Record) -> dict[str, Any]:
    """Where the search put this row; a record from elsewhere still shows its runtime."""
    return r.extra.get(fields.ROW) or {"runtime": r.runtime, "batch": r.batch}


def _is_probe(r: Record) -> bool:
    return r.family == "probe"


def peaks(records: Sequence[Record]) -> dict[str, float]:
    """Best probe GFLOP/s per precision."""
    best: dict[str, float] = {}
    for r in records:
        if _is_probe(r) and r.ok and r.gflops and r.throughput:
            prec = r.extra.get(fields.PRECISION, "?")
            rate = r.gflops / r.batch * r.throughput
            best[prec] = max(best.get(prec, 0.0), rate)
    return best


def achieved(r: Record) -> float | None:
    """Network GFLOP/s: FLOPs per slice x slices per second."""
    if not (r.ok and r.gflops and r.throughput):
        return None
    return r.gflops / r.batch * r.throughput


def _pipeline_records(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if not _is_probe(r)]


def _key(r: Record) -> tuple:
    row = _row_of(r)
    return (row.get("network"), row.get("width"))


def reference_dice(records: Sequence[Record]) -> dict[tuple, float]:
    """Dice of each network's FP32 eager ``full`` row: the reference of its Dice difference."""
    out = {}
    for r in _pipeline_records(records):
        row = _row_of(r)
        if r.ok and row.get("runtime") == REFERENCE and row.get("path") == "full" \
                and r.extra.get(fields.DICE) is not None:
            out[_key(r)] = r.extra[fields.DICE]
    return out


def baseline(records: Sequence[Record]) -> Record | None:
    return next((r for r in _pipeline_records(records) if _row_of(r).get("stage") == "baseline"),
                None)


def reference_of_baseline(records: Sequence[Record]) -> float | None:
    """The original network's FP32 Dice on the phantoms: what 'the same quality' is measured
    against."""
    base = baseline(records)
    ref = reference_dice(records).get((ORIGINAL, 128))
    if ref is None and base is not None:
        ref = base.extra.get(fields.DICE)
    return ref


def quality_established(records: Sequence[Record]) -> bool:
    """Whether the trained reference segments well enough for a Dice tolerance to mean
    anything: a network at Dice 0.04 keeps 'within 0.01' whatever a runtime does to it."""
    ref = reference_of_baseline(records)
    return ref is not None and ref >= TRAINED_DICE_FLOOR


def champion(records: Sequence[Record]) -> Record | None:
    """The fastest row whose Dice is within DICE_TOLERANCE of the baseline network's FP32 Dice
    (eager ``full``; the baseline's own Dice when no eager row ran)."""
    ref = reference_of_baseline(records)
    if ref is None:
        return None
    ok = [r for r in _pipeline_records(records)
          if r.ok and r.throughput and r.extra.get(fields.DICE) is not None
          and r.extra[fields.DICE] >= ref - DICE_TOLERANCE]
    return max(ok, key=lambda r: r.throughput, default=None)


def recipe(records: Sequence[Record]) -> dict[str, Any] | None:
    """The champion's recipe, for the README recommendations."""
    best = champion(records)
    if best is None:
        return None
    row = _row_of(best)
    base = baseline(records)
    ratio = (best.throughput / base.throughput
             if base is not None and base.ok and base.throughput else None)
    return {"network": row["network"], "width": row["width"], "runtime": row["runtime"],
            "precision": best.extra.get(fields.PRECISION), "path": row["path"],
            "batch": row["batch"], "slices_per_s": best.throughput, "ratio": ratio,
            "dice": best.extra.get(fields.DICE),
            "reproduce": (f"uv run benchmarks/champion/benchmark.py --models "
                          f"{network_name(row['network'], row['width'])} "
                          f"--runtimes {row['runtime']}")}


def needs_breakdown(records: Sequence[Record]) -> Row | None:
    """The champion's row with stage timing turned on, if the champion was timed without it
    (the baseline always is); None when there is no champion or it has its breakdown."""
    best = champion(records)
    if best is None or stage_times(best) is not None or fields.ROW not in best.extra:
        return None
    return replace(Row(**best.extra[fields.ROW]), breakdown=True)


def stage_times(r: Record) -> dict[str, float] | None:
    """Milliseconds per slice of encoder, decoder, head and upsample+argmax, from the prefix
    timings of the same cell (differences of medians, so a stage may come out slightly
    negative when it is tiny)."""
    if not r.ok or not r.throughput or not all(p in r.submodules for p in STAGES):
        return None
    ms = [1000.0 / r.submodules[p]["throughput"] for p in STAGES] + [1000.0 / r.throughput]
    return {"encoder": ms[0], "decoder": ms[1] - ms[0], "head": ms[2] - ms[1],
            "upsample+argmax": ms[3] - ms[2]}


# --- tables -------------------------------------------------------------------------------------

def _ratio(r: Record, base: Record | None) -> str:
    if base is None or not (base.ok and base.throughput and r.ok and r.throughput):
        return DASH
    return f"{r.throughput / base.throughput:.2f}x"


def _dice_diff(r: Record, refs: dict[tuple, float]) -> str:
    ref = refs.get(_key(r))
    dice = r.extra.get(fields.DICE)
    return DASH if ref is None or dice is None or not r.ok else f"{dice - ref:+.3f}"


def _share(r: Record, peak: dict[str, float]) -> str:
    rate = achieved(r)
    top = peak.get(r.extra.get(fields.PRECISION, ""))
    return DASH if rate is None or not top else f"{100.0 * rate / top:.0f}"


def _latency(r: Record) -> str:
    return num((r.timing or {}).get("latency_p50_ms"), 1)


def main_table(records: Sequence[Record]) -> str:
    recs = _pipeline_records(records)
    base, best = baseline(records), champion(records)
    refs, peak = reference_dice(records), peaks(records)
    recs.sort(key=lambda r: (not r.ok, -(r.throughput or 0)))
    rows = []
    for r in recs:
        row = _row_of(r)
        mark = " **baseline**" if r is base else (" **champion**" if r is best else "")
        rows.append([row.get("stage", "?") + mark, fields.display(r),
                     row.get("runtime"), r.extra.get(fields.PRECISION, DASH), row.get("path"),
                     row.get("batch"), num(r.throughput, 1) if r.ok else DASH,
                     _latency(r) if r.ok else DASH, _ratio(r, base),
                     num(r.extra.get(fields.DICE), 3) if r.ok else DASH, _dice_diff(r, refs),
                     num(achieved(r), 0), _share(r, peak), status_text(r)])
    return tabulate(rows, headers=["stage", "network (FPN width)", "runtime", "precision",
                                   "output path", "slices/call", "slices/s",
                                   "latency p50 (ms/call)", "vs baseline", "Dice vs truth",
                                   "Dice vs own FP32 eager full", "GFLOP/s",
                                   "% of precision peak", "status"],
                    tablefmt="github", disable_numparse=True)


def peak_table(records: Sequence[Record]) -> str:
    rows = [[fields.display(r), r.runtime, r.extra.get(fields.PRECISION, DASH),
             num(achieved(r), 0), status_text(r)]
            for r in records if _is_probe(r)]
    return tabulate(rows, headers=["probe", "runtime", "precision", "GFLOP/s", "status"],
                    tablefmt="github", disable_numparse=True)


def breakdown_table(records: Sequence[Record]) -> str:
    base, best = baseline(records), champion(records)
    rows = []
    for label, r in (("baseline", base), ("champion", best)):
        if r is None:
            continue
        stages = stage_times(r)
        row = _row_of(r)
        what = f"{label}: {fields.display(r)}, {row.get('runtime')}, " \
               f"{row.get('path')}, batch {row.get('batch')}"
        if stages is None:
            rows.append([what] + [DASH] * 5)
            continue
        total = sum(stages.values())
        rows.append([what] + [f"{v:.1f} ({100 * v / total:.0f}%)" for v in stages.values()]
                    + [f"{total:.1f}"])
    return tabulate(rows, headers=["row", "encoder ms", "decoder ms", "head ms",
                                   "upsample+argmax ms", "total ms/slice"],
                    tablefmt="github", disable_numparse=True)


def fastest_exact_path(records: Sequence[Record], network: str, width: int
                       ) -> Record | None:
    """The fastest row of ``network`` at ``width`` whose labels are not decided on a coarser
    grid (any path but ``COARSE_PATHS``), within the Dice tolerance of its phantom reference."""
    refs = reference_dice(records)
    rows = [r for r in _pipeline_records(records)
            if r.ok and r.throughput and (_row_of(r).get("network"), _row_of(r).get("width"))
            == (network, width) and _row_of(r).get("path") not in COARSE_PATHS]
    rows = [r for r in rows if _key(r) not in refs or r.extra.get(fields.DICE) is None
            or refs[_key(r)] - r.extra[fields.DICE] <= DICE_TOLERANCE]
    return max(rows, key=lambda r: r.throughput, default=None)


def real_ct_text(records: Sequence[Record], info: dict[str, Any],
                 real: dict[str, Any] | None) -> str:
    """What the real-CT run (``realct.view.path_verdict``) says about the champion's path."""
    if real is None:
        return ""
    low, full = real["lowres"], real["full"]
    where = "" if real.get("same_machine", True) else f", real_ct run on {real['machine']}"
    text = (f" On real CT ({real['dataset']}; {real['budget']} of training each{where}), the same "
            f"network scores Dice {low['dice']:.3f} (NSD {low['nsd']:.3f}) with path lowres and "
            f"{full['dice']:.3f} (NSD {full['nsd']:.3f}) with path full.")
    if info["path"] not in COARSE_PATHS or real["cost"] <= DICE_TOLERANCE:
        return text
    text += (f" **Path lowres loses {real['cost']:.3f} Dice on real labels**, more than the "
             f"{DICE_TOLERANCE} tolerance")
    exact = fastest_exact_path(records, info["network"], info["width"])
    if exact is None:
        return text + "."
    row = _row_of(exact)
    return (text + f": the fastest path that keeps the labels is {row.get('path')} under "
            f"{row.get('runtime')}, {exact.throughput:.1f} slices/s in the same run.")


def headline(records: Sequence[Record], real: dict[str, Any] | None = None) -> str:
    """The champion in one paragraph; ``real`` (``realct.view.path_verdict``) adds what its
    output path costs on real labelled CT."""
    base, best, info = baseline(records), champion(records), recipe(records)
    if base is None or best is None or info is None:
        return "No champion: the baseline or the eager reference did not run."
    ratio = info["ratio"]
    goal = "reaches" if ratio is not None and ratio >= 2.0 else "misses"
    text = (f"Champion: {info['network']} + FPN {info['width']}, {info['runtime']} "
            f"({info['precision']}), path {info['path']}, {info['batch']} slice(s) per call: "
            f"{info['slices_per_s']:.1f} slices/s, "
            f"{'?' if ratio is None else f'{ratio:.2f}x'} the baseline's "
            f"{base.throughput:.1f} in the same run ({goal} the 2x goal), Dice "
            f"{num(info['dice'], 3)}.")
    if not quality_established(records):
        text += (f" **Quality is not established:** the original network trained here reaches "
                 f"only Dice {num(reference_of_baseline(records), 3)} on the phantoms (below "
                 f"{TRAINED_DICE_FLOOR}), so staying within {DICE_TOLERANCE} of it says nothing "
                 "about what a lower precision or a coarser output path does to organ "
                 "boundaries. "
                 "Read this row as the fastest pipeline, not yet as one of equal quality.")
    elif info["path"] in COARSE_PATHS and real is None:
        text += (f" Its Dice is within {DICE_TOLERANCE} of the original's "
                 f"{num(reference_of_baseline(records), 3)} on phantoms of "
                 f"{WIDE_HEAD_ORGANS} large organs; path {info['path']} places boundaries on a "
                 "coarser grid, which costs small structures (ribs, vessels) more Dice on real "
                 "CT: check it on your own labelled scans before relying on it.")
    return text + real_ct_text(records, info, real)


def real_verdict(results: Any) -> dict[str, Any] | None:
    """The real-CT verdict on the champion's paths from the real_ct results beside this file:
    the same machine's, else another's (the verdict names it)."""
    if results is None or results.path is None:
        return None
    from segbench.realct.view import find_path_verdict

    return find_path_verdict(results.path.parent.parent, results.path.stem)


def tables(bench: Any, results: Any) -> list[tuple[str, str]]:
    records = results.records
    return [("", headline(records, real_verdict(results))),
            ("Slice -> uint8 label map at 512x512, fastest first", main_table(records)),
            ("Stage breakdown (ms per slice)", breakdown_table(records)),
            ("Peak probes of this CPU (same run)", peak_table(records))]

