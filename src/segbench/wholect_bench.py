"""The whole_ct benchmark's matrix and tables: which pipelines run under which runtimes, in
which order, and how their records become the per-CT table and the loop-vs-estimate check.

A method is a :class:`MethodSpec` (network, pipeline, runtimes, quality kind); the matrix is
the list :data:`METHODS`, most important first, because results are saved after every cell and
a long run may be cut short. Another kind of row (e.g. the real TotalSegmentator CLI) is one
more entry in that list plus whatever its cells need.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from segbench import volume, wholect
from segbench.cell import Cell
from segbench.fidelity import TRAINED_DICE_FLOOR
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.models.nets3d import (
    STUNET_PATCH,
    STUNET_SPACING_MM,
    TOTALSEG_FAST_OUTPUTS,
    TOTALSEG_PARTS,
)
from segbench.report import DASH, num
from segbench.results import Record
from segbench.runtimes import REFERENCE

FAST_PATCH = volume.FAST_PATCH  # (112, 112, 128), TotalSegmentator --fast's plans
QUICK_CT = {"kind": "phantom", "shape": [48, 96, 96], "spacing": [3.0, 3.0, 3.0],
            "seed": wholect.PHANTOM_SEED}
FULL_CT = {"kind": "phantom", "shape": list(wholect.PHANTOM_SHAPE),
           "spacing": list(wholect.PHANTOM_SPACING), "seed": wholect.PHANTOM_SEED}
CELL_TIMEOUT = 1800.0  # s; an STU-Net loop takes minutes, the harness's default is 600 s
BUDGET = "not run in the default matrix (45-minute budget on 2 cores); --runtimes runs it"


@dataclass(frozen=True)
class MethodSpec:
    key: str  # the --models name
    title: str  # what the table calls it
    family: str
    network: str
    pipeline: wholect.Pipeline
    runtimes: tuple[str, ...]  # default runtimes, most important first; the first is the
    # method's reference (its FP32 eager loop when eager is among them)
    quality: str  # "dice" (trained weights, phantom truth) or "agreement" (random weights)
    networks: int = 1  # networks run one after another; the loop runs one, counted this often
    long: bool = False  # a loop of minutes: warm-up = one network pass, one timed loop
    quick: bool = False  # part of --quick
    not_run: tuple[str, ...] = ()  # runtimes the default matrix leaves out (rows say why)
    note: str = ""
    stand_in: str = ""  # why this runs in place of the method it is named after (2d-best)


def _3d(network: str, classes: int, spacing: float, patch: tuple[int, ...], step: float,
        back: str = "nearest") -> wholect.Pipeline:
    return wholect.Pipeline("3d", network, classes, spacing_mm=spacing, patch=patch, step=step,
                            back=back)


def _2d(network: str, batch: int, path: str) -> wholect.Pipeline:
    return wholect.Pipeline("2d", network, wholect.CLASSES_2D, batch=batch, path=path)


ORIGINAL_2D = "mobilenetv4_conv_small"  # + the project's Semantic FPN, 128 channels
# The 2D pipeline run as "2d-best" when this machine has no champion results (see
# champion_lookup): the original network under OpenVINO bf16 with in-graph argmax. It is NOT
# the champion, and its rows say so (title, "how" column, extra["stand_in"]).
BEST_2D = ("mobilenetv4_conv_small", "openvino-bf16", "blocked", 4)
CHAMPION_TITLE = "2D champion"
STAND_IN_TITLE = "2D stand-in, not the champion"
FAST_RUNTIMES = ("eager", "openvino-bf16", "compile-bf16", "openvino-int8", "ort-fp32",
                 "openvino-fp32")

# The 2D pipelines' upsample + argmax run inside the network's graph (family "fpn-labels"),
# where the runtime can fuse them, so their "network" stage includes it; the champion
# benchmark's breakdown splits the same pipeline into encoder/decoder/head/upsample+argmax.
IN_GRAPH = "upsample + argmax inside the network (its column)"

METHODS: list[MethodSpec] = [
    MethodSpec("2d-original", "2D original recipe (MobileNetV4-Conv-Small + FPN 128)",
               "fpn-labels", ORIGINAL_2D, _2d(ORIGINAL_2D, 1, "full"), ("ort-fp32",), "dice",
               quick=True, note="batch 1, path full; " + IN_GRAPH),
    MethodSpec("2d-best", f"{STAND_IN_TITLE} (MobileNetV4-Conv-Small + FPN 128)", "fpn-labels",
               BEST_2D[0], _2d(BEST_2D[0], BEST_2D[3], BEST_2D[2]), (BEST_2D[1],), "dice",
               note=f"batch {BEST_2D[3]}, path {BEST_2D[2]}; " + IN_GRAPH,
               stand_in="no champion results"),
    MethodSpec("totalseg-fast", "TotalSegmentator --fast (3 mm)", "3d-phantom", "totalseg-3mm",
               _3d("totalseg-3mm", TOTALSEG_FAST_OUTPUTS, volume.FAST_SPACING_MM, FAST_PATCH,
                   volume.TOTALSEG_STEP), FAST_RUNTIMES, "dice",
               quick=True, not_run=("compile", "ort-int8", "compile-int8"),
               note="labels back by nearest"),
    MethodSpec("totalseg-fast-probs", "TotalSegmentator --fast, probabilities resampled back",
               "3d-phantom", "totalseg-3mm",
               _3d("totalseg-3mm", TOTALSEG_FAST_OUTPUTS, volume.FAST_SPACING_MM, FAST_PATCH,
                   volume.TOTALSEG_STEP, back="probabilities"),
               ("eager",), "dice", note="nnU-Net's way back: logits resampled, then argmax"),
    MethodSpec("totalseg-default", "TotalSegmentator default (5 part networks, 1.5 mm)", "3d",
               "totalseg-1.5mm",
               _3d("totalseg-1.5mm", TOTALSEG_PARTS["organs"][1], volume.TOTALSEG_SPACING_MM,
                   volume.TOTALSEG_PATCH, volume.TOTALSEG_STEP),
               ("eager", "openvino-bf16"), "agreement", networks=5, long=True,
               not_run=("compile-bf16", "ort-fp32", "openvino-int8"),
               note="organs part (25 outputs) run as a loop; the other four parts add its "
                    "per-network stages (the CT is resampled to 1.5 mm and back once)"),
    MethodSpec("stunet-s", "STU-Net-S (1.5 mm, step 0.5)", "3d", "stunet-s",
               _3d("stunet-s", TOTALSEG_FAST_OUTPUTS, STUNET_SPACING_MM, STUNET_PATCH,
                   volume.NNUNET_STEP), ("eager", "openvino-bf16"),
               "agreement", long=True, not_run=("compile-bf16", "ort-fp32", "openvino-int8")),
    MethodSpec("stunet-b", "STU-Net-B (1.5 mm, step 0.5)", "3d", "stunet-b",
               _3d("stunet-b", TOTALSEG_FAST_OUTPUTS, STUNET_SPACING_MM, STUNET_PATCH,
                   volume.NNUNET_STEP), ("openvino-bf16",), "agreement",
               long=True, not_run=("eager", "compile-bf16", "ort-fp32", "openvino-int8"),
               note="eager loop (~15 min) left out: no FP32 reference for agreement"),
]
ALL_RUNTIMES = list(dict.fromkeys(r for m in METHODS for r in m.runtimes))
# estimate: that network, nnU-Net's default step, mirroring
NNUNET_DEFAULTS = ("totalseg-default", volume.NNUNET_STEP, True)

# --------------------------------------------------------------------------------------------
# Weights


def recipe_2d(size: int, quick: bool) -> dict[str, Any]:
    """2D training: the champion benchmark's recipe (trained small, fine-tuned at the CT's
    in-plane size), so the 2D rows here run the very weights the champion was chosen with and
    the cache serves both benchmarks."""
    from segbench.champion import Settings

    return Settings.make(quick, size).train


def champion_method(opts: Any) -> MethodSpec | None:
    """The 2d-best method from this machine's champion results (network, FPN width, runtime,
    output path, slices per call), or None when that benchmark has no full run here yet."""
    return champion_lookup(opts)[0]


def champion_lookup(opts: Any) -> tuple[MethodSpec | None, str]:
    """(the champion's method, "") or (None, why this run has no champion to run)."""
    from segbench import champion, machine
    from segbench.results import ResultsError, load, results_path

    if opts.quick:
        return None, "a --quick run does not look the champion up"
    path = results_path(opts.out, "champion", machine.slug(), False)
    if not path.exists():
        return None, (f"no champion results for this machine ({path} does not exist: run "
                      "benchmarks/champion/benchmark.py)")
    try:
        best = champion.recipe(load(path, "champion").records)
    except ResultsError as exc:
        return None, f"the champion results cannot be read ({exc})"
    if best is None:
        return None, f"{path} names no champion yet"
    network = champion.network_name(best["network"], best["width"])
    return MethodSpec("2d-best", f"{CHAMPION_TITLE} ({network})", "fpn-labels", network,
                      _2d(network, best["batch"], best["path"]), (best["runtime"],), "dice",
                      note=f"batch {best['batch']}, path {best['path']}, from the champion "
                           f"benchmark's run on this machine; {IN_GRAPH}"), ""


def stand_in(method: MethodSpec, why: str) -> MethodSpec:
    """The 2d-best stand-in, saying which network and path it runs instead and why."""
    network, runtime, path, batch = BEST_2D
    return replace(method, stand_in=why,
                   note=f"NOT the champion ({why}); ran {network} + FPN 128 under {runtime}, "
                        f"batch {batch}, path {path} instead; {IN_GRAPH}")


def row_title(r: Record) -> str:
    """What a row ran, as tables name it. A 2d-best row is the champion's only if it was run as
    the champion: a stand-in (or an older record of one, titled "2D best pipeline") never
    reads as the champion."""
    title = r.extra.get("title", r.model)
    if r.extra.get("method") == "2d-best" and not (
            title.startswith(CHAMPION_TITLE) or title.startswith(STAND_IN_TITLE)):
        title = f"{STAND_IN_TITLE} ({r.model})"
    return title


def recipe_3d(quick: bool) -> dict[str, Any]:
    from segbench.wholect_weights import Recipe3D

    if quick:
        return Recipe3D(steps=3, batch=1, patch=32, volumes=1, grid=(48, 96, 96)).to_dict()
    return Recipe3D(steps=400, batch=2, patch=48, volumes=6).to_dict()


def model_spec(method: MethodSpec, ct: dict[str, Any], quick: bool) -> ModelSpec:
    classes = method.pipeline.classes
    if method.family == "fpn-labels":
        size = ct["shape"][-1] if ct["kind"] == "phantom" else 512
        return ModelSpec("fpn-labels", method.network, classes,
                         {"path": method.pipeline.path, "train": recipe_2d(size, quick)})
    if method.family == "3d-phantom":
        return ModelSpec("3d-phantom", method.network, classes, {"recipe": recipe_3d(quick)})
    return ModelSpec(method.family, method.network, classes)


# --------------------------------------------------------------------------------------------
# Cells


def nifti_argument(text: str) -> str:
    """argparse type of --input: a readable 3D NIfTI, checked from its header before any work."""
    try:
        return str(Path(wholect.check_nifti(text)).resolve())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def loop_protocol(loops: int, quick: bool) -> Protocol:
    """First call = the warm-up (a whole loop, or one pass for long methods), timed apart;
    then ``loops`` timed loops of one call each."""
    return Protocol(warmup_calls=0, warmup_seconds=0.0, repeats=loops, repeat_seconds=0.0,
                    repeat_calls=1, quick=quick)


def ct_source(opts: Any) -> dict[str, Any]:
    path = opts.extra.get("input")
    if path:
        return {"kind": "nifti", "path": path}
    return dict(QUICK_CT if opts.quick else FULL_CT)


def selected(opts: Any) -> list[tuple[MethodSpec, list[str]]]:
    """(method, runtimes) in matrix order; an explicit --runtimes applies to every method.
    The 2d-best method is the champion benchmark's winner where it has run on this machine."""
    explicit = list(opts.runtimes) != list(ALL_RUNTIMES)
    out = []
    for m in METHODS:
        if m.key not in opts.models:
            continue
        if m.key == "2d-best":
            best, why = champion_lookup(opts)
            m = best if best is not None else stand_in(m, why)
        if explicit:
            runtimes = list(opts.runtimes)
        else:
            runtimes = list(m.runtimes[:1] if opts.quick else m.runtimes)
        out.append((m, runtimes))
    return out


def make_cells(bench: Any, opts: Any) -> list[Cell]:
    ct = ct_source(opts)
    loops = opts.extra.get("loops") or 1
    if loops < 1:
        from segbench.cli import UsageError

        raise UsageError(f"--loops must be at least 1, got {loops}")
    # a CT given with --input was checked whole at argument time; what only looks unusual
    # about it (a slab, a head, padded slices) goes into every row
    unusual = (list(wholect.inspect_nifti(ct["path"]).unusual) if ct["kind"] == "nifti"
               else [])
    if unusual and not getattr(opts, "dry_run", False):
        print(f"note: unusual CT ({'; '.join(unusual)}); it runs, and its rows say so",
              file=sys.stderr, flush=True)
    cells = []
    for method, runtimes in selected(opts):
        spec = model_spec(method, ct, opts.quick)
        pipe = method.pipeline
        quality = method.quality if ct["kind"] == "phantom" else "agreement"
        # the weights recipe is part of the key: a retrained network never meets old labels
        reference = json.dumps([method.network, spec.family, spec.options, pipe.to_dict(), ct],
                               sort_keys=True)
        long = method.long or opts.quick
        for runtime in runtimes:
            shape = ((pipe.batch, 3, 1, 1) if pipe.kind == "2d" else (1, 1, *pipe.patch))
            extra = {"method": method.key, "title": method.title, "networks": method.networks,
                     "note": method.note, "tag": method.key}
            if method.stand_in:
                extra["stand_in"] = method.stand_in
            if unusual:
                extra["ct_unusual"] = unusual
            cells.append(Cell(
                benchmark=bench.name, model=spec, runtime=runtime, shape=shape,
                threads=opts.threads, protocol=loop_protocol(loops, opts.quick), fidelity=False,
                extra=extra,
                scenario={"kind": "whole_ct", "ct": ct, "pipeline": pipe.to_dict(),
                          "quality": quality, "reference": reference,
                          "calibration": 4 if opts.quick else 8,
                          "warmup": "pass" if long else "loop",
                          "estimate_passes": 1 if long else 2}))
    if cells and not getattr(opts, "dry_run", False):
        if ct["kind"] == "phantom":
            print("phantom CT ...", file=sys.stderr, flush=True)
            wholect.load_ct(ct)  # made once and cached, not once per cell
    return cells


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
    return 1 if stage in ONCE_PER_CT else r.extra.get("networks", 1)


def seconds_per_ct(r: Record) -> float | None:
    """The measured loop (median of the timed loops) for one network, plus the per-network
    stages of the last loop for each further network it stands for (the once-per-CT stages
    are not repeated)."""
    if not r.ok or not r.timing:
        return None
    loop = r.timing["latency_p50_ms"] / 1e3
    stages = r.extra.get("stages_s") or {}
    return loop + sum((_stage_factor(r, s) - 1) * v for s, v in stages.items())


def stage_seconds(r: Record) -> dict[str, float]:
    stages = r.extra.get("stages_s") or {}
    return {col: sum(stages.get(s, 0.0) * _stage_factor(r, s) for s in parts)
            for col, parts in STAGE_COLUMNS if any(s in stages for s in parts)}


def _find(records: Sequence[Record], method: str, runtime: str) -> Record | None:
    return next((r for r in records if r.extra.get("method") == method
                 and r.runtime == runtime), None)


def quality_text(r: Record) -> str:
    if not r.ok:
        return DASH
    if r.extra.get("dice") is not None:
        text = f"Dice {r.extra['dice']:.3f}"
        # too little trained for its Dice to say how good the method is (the 3D --fast
        # network gets minutes of training here, nnU-Net's gets days)
        if r.extra["dice"] < TRAINED_DICE_FLOOR:
            text += " (barely trained: compares runtimes, not methods)"
        if r.extra.get("dice_vs_eager") is not None:
            text += f" (vs eager {r.extra['dice_vs_eager']:.3f})"
        return text
    agree = r.extra.get("agreement_vs_eager")
    if agree is None:
        return "no FP32 eager loop to compare"
    return f"{agree:.2f} % agree (random weights)"


KEEPS_OUTPUT = 0.9  # Dice with, or share of voxels agreeing with, the method's own FP32 loop


def keeps_output(r: Record) -> bool:
    """Whether a runtime's label volume stays close to the same network's FP32 eager loop (the
    only quality evidence when the network itself is barely trained or random)."""
    if r.runtime == REFERENCE:
        return True
    if r.extra.get("dice_vs_eager") is not None:
        return r.extra["dice_vs_eager"] >= KEEPS_OUTPUT
    agree = r.extra.get("agreement_vs_eager")
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
    for r in sorted(loops, key=lambda r: (order.get(r.extra.get("method"), 99),
                                 seconds_per_ct(r) or math.inf)):
        sec = seconds_per_ct(r)
        stages = stage_seconds(r)
        status = "ok" if r.ok else f"{r.status}: {r.reason}"
        if r.ok and r.extra.get("networks", 1) > 1:
            status = (f"ok; one of {r.extra['networks']} networks timed, its per-network "
                      "stages counted for each")
        if r.extra.get("ct_unusual"):
            status += "; unusual CT: " + "; ".join(r.extra["ct_unusual"])
        rows.append([row_title(r), r.runtime, r.extra.get("note", ""),
                     _secs(sec), *(_secs(stages.get(col)) for col, _ in STAGE_COLUMNS),
                     _gib(r.extra.get("loop_peak_rss_bytes")), quality_text(r),
                     num(sec / base_s, 2) + "x" if sec and base_s else DASH,
                     num(sec / fast_s, 2) + "x" if sec and fast_s else DASH,
                     num(sec / tool_s, 2) + "x" if sec and tool_s else DASH, status])
    present = {(r.extra.get("method"), r.runtime) for r in records}
    full = {r.extra.get("method") for r in records if not r.quick}
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
        if not r.ok or r.extra.get("estimate_s") is None:
            continue
        k = r.extra.get("networks", 1)
        measured = seconds_per_ct(r)  # the per-CT table's figure, not the loop times k
        est = r.extra["estimate_s"]  # passes x isolated pass, one network
        predict = (r.extra.get("stages_s") or {}).get("predict")
        passes = r.extra.get("passes")
        rows.append([row_title(r), r.runtime,
                     f"{passes} x {k} networks" if k > 1 else passes,
                     _secs(r.extra.get("seconds_per_pass")), _secs(est * k), _secs(measured),
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
        if r.extra.get("method") != key or not r.ok or r.extra.get("seconds_per_pass") is None:
            continue
        pipe = wholect.Pipeline.from_dict(r.extra["pipeline"])
        pipe = replace(pipe, step=step, mirror=mirror)
        passes = pipe.passes(r.extra["ct_shape"], r.extra["ct_spacing"])
        est = passes * r.extra["seconds_per_pass"]
        rows.append([f"nnU-Net defaults (ESTIMATE: step {step}, 8x mirroring, one network)",
                     r.runtime, passes, _secs(r.extra["seconds_per_pass"]), _secs(est), DASH,
                     DASH, DASH])
    return rows


ESTIMATE_HEADERS = ["method", "runtime", "network passes", "s / pass (isolated)",
                    "passes x s / pass", "measured per CT (s)", "measured / estimate",
                    "network stage / estimate"]


def tables(bench: Any, results: Any) -> list[tuple[str, str]]:
    records = list(results.records)
    ct = next((r.extra for r in records if r.extra.get("ct_source")), {})
    where = (f"{ct.get('ct_source')}, {'x'.join(map(str, ct.get('ct_shape', [])[::-1]))} "
             f"voxels (x, y, z) at {' x '.join(f'{s:g}' for s in ct.get('ct_spacing', [])[::-1])}"
             " mm" if ct else "")
    loops = {r.protocol.get("repeats") for r in records if r.protocol}
    warm = sorted({r.extra.get("warmup") for r in records if r.extra.get("warmup")})
    title = (f"Per whole CT ({where}): each pipeline timed as a real loop "
             f"({'/'.join(map(str, sorted(loops)))} timed loop(s) after a warm-up of "
             f"{' or '.join(warm)})")
    out = [(title, tabulate(per_ct_rows(records), headers=PER_CT_HEADERS, tablefmt="github",
                            disable_numparse=True))]
    est = estimate_rows(records)
    if est:
        out.append(("Check: measured loop vs network passes x isolated s / pass", tabulate(
            est, headers=ESTIMATE_HEADERS, tablefmt="github", disable_numparse=True)))
    return out


def stage_plot(results: Any, out: Path) -> list[Path | None]:
    from segbench.plots import stage_bars_plot

    rows = [(f"{row_title(r)} | {r.runtime}", stage_seconds(r))
            for r in results.records if r.extra.get("method") and r.ok and not r.quick]
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
                 if r.extra.get("method") == m.key and seconds_per_ct(r) and not r.quick
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
