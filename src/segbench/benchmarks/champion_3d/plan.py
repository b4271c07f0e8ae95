"""What the champion_3d benchmark runs: the 3D side's search, staged like the 2D champion's.

The network is TotalSegmentator --fast's (3 mm, 118 outputs) with random weights: speed does not
depend on them, and training it on phantoms long enough to matter takes hours on 2 cores
(whole_ct's 400 steps leave it barely trained, Dice 0.06 against the phantom's truth). Every
candidate is a whole-CT loop (HU volume in, uint8 labels on the CT's grid out) on the same CT,
scored by Dice (and voxel agreement) against the labels of the tool's own settings under FP32
eager, the reference row, always in the run. A random network's class margins are thin, so
this is a strict test of how much a knob moves the labels. The stated search (each row names
the stage that put it there):

1. ``runtimes``: the tool's settings (112x112x128 tiles, step 0.8, float16 accumulation, argmax
   at 3 mm then labels back by nearest) under every runtime the whole_ct matrix knows.
2. ``geometry``: one tile over the whole 3 mm grid (padded to a multiple of the network's
   stride) instead of overlapping plan-sized tiles, under FP32 eager (what the change alone
   does to the labels) and the focus runtimes. Tile step is not a knob on this CT: 0.5, 0.8
   and 1.0 all give the same 8 tiles (the view shows the count per step).
3. ``blend``: float32 accumulation, and nnU-Net's way back (probabilities resampled to the CT,
   then argmax) instead of argmax at 3 mm, under the first focus runtime.
4. ``options``: runtime options that matter for 3D convolutions (channels-last-3d off for
   eager and compile-bf16).
5. ``calls``: several tiles per network call (2 and 4) under ``EXACT_RUNTIME``, the fastest
   runtime that kept the labels in the last full run: a knob that leaves the labels alone.
6. ``streams``: threads against streams, OpenVINO's threads shared out over 2 streams (one
   thread each, two tiles in flight) instead of one stream of 2 threads, under
   ``EXACT_RUNTIME`` and the first focus runtime.
7. ``memory``: labels slab by slab (one slab of accumulators; the same labels) under
   ``EXACT_RUNTIME``: what the low-memory way costs in seconds.
8. ``int8``: OpenVINO INT8 with the first and last convolutions left in float (named in the
   record), and with NNCF's "mixed" preset (asymmetric activations, for the LeakyReLU outputs).

Beside the search, in the same run: the 2D champion (its recipe read from a champion results
file, random weights: speed only, its quality quoted by the view), peak probes per precision
(the share of the machine a row uses), and with ``--peers`` the real TotalSegmentator --fast
--ml as shipped (the 5x target is set against it). Not searched: the 1.5 mm network.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from segbench import fields
from segbench import runtimes as registry
from segbench.benchmarks.champion_3d.view import TOOL_KEY
from segbench.catalogue import (
    FAST_NOT_RUN,
    FAST_RUNTIMES,
    TOTALSEG_FAST,
    TOTALSEG_FAST_OUTPUTS,
    MethodSpec,
    Pipeline,
    whole_grid_patch,
)
from segbench.cell import Cell

NAME = "champion_3d"
NETWORK = TOTALSEG_FAST.network
REFERENCE_RUNTIME = "eager"
# The runtimes stage: whole_ct's --fast runtimes in their order, then the ones whole_ct leaves
# out, but torch.compile FP32: the search was stated without it (docs/champion_3d.md, no reason
# recorded; its peak probe runs). A new runtime joins through FAST_RUNTIMES.
RUNTIMES = registry.ordered(FAST_RUNTIMES + FAST_NOT_RUN, leave_out=("compile",))
FOCUS = ("openvino-bf16", "openvino-int8")
EXACT_RUNTIME = "openvino-fp32"  # the knobs that keep labels: on the last run's champion
TILES_PER_CALL = (2, 4)
STREAMS = 2
# Peak probes: every precision of OpenVINO (the focus toolchain), then of torch.compile but
# PT2E INT8 (the INT8 peak is OpenVINO's). Which toolchains are probed is this benchmark's
# choice, stated with the search; the runtimes follow from the registry.
PROBE_TOOLCHAINS = ("openvino", "compile")
PROBE_RUNTIMES = tuple(n for toolchain in PROBE_TOOLCHAINS
                       for n in registry.of_toolchain(toolchain) if n != "compile-int8")
QUICK_RUNTIMES = ("eager",)
PROBE_SHAPE = (1, 3, 128, 128)  # the champion benchmark's probe input


@dataclass(frozen=True)
class Candidate:
    """One pipeline of the search under one runtime."""

    stage: str
    key: str  # the pipeline variant: "tool", "whole-tile", "acc-float32", "probs-back",
    # "calls-K", "streams-S", "slabs"
    runtime: str
    pipeline: Pipeline
    how: str
    options: tuple[tuple[str, Any], ...] = ()  # runtime options

    @property
    def is_reference(self) -> bool:
        return self.key == TOOL_KEY and self.runtime == REFERENCE_RUNTIME and not self.options


def tool_pipeline(quick: bool) -> Pipeline:
    pipe = Pipeline.of_method(TOTALSEG_FAST, TOTALSEG_FAST_OUTPUTS)
    return replace(pipe, patch=(48, 64, 64)) if quick else pipe  # 4 tiles on the quick CT


def search(grid: tuple[int, ...], quick: bool, runtimes: tuple[str, ...] = RUNTIMES,
           focus: tuple[str, ...] = FOCUS) -> list[Candidate]:
    """The candidates in run order (the reference first: a run cut short keeps it)."""
    tool = tool_pipeline(quick)
    whole = replace(tool, patch=whole_grid_patch(grid, NETWORK), step=1.0)
    ref = Candidate("runtimes", TOOL_KEY, REFERENCE_RUNTIME, tool,
                    "the tool's settings, FP32 eager: the reference")
    if quick:
        return [ref, Candidate("geometry", "whole-tile", REFERENCE_RUNTIME, whole,
                               "one tile over the whole grid")]
    out = [ref]
    out += [Candidate("runtimes", TOOL_KEY, r, tool, "the tool's settings")
            for r in runtimes if r != REFERENCE_RUNTIME]
    out += [Candidate("geometry", "whole-tile", r, whole,
                      f"one {'x'.join(map(str, whole.patch))} tile over the whole grid")
            for r in (REFERENCE_RUNTIME, *focus)]
    first = focus[0]
    out.append(Candidate("blend", "acc-float32", first, replace(tool, accumulate="float32"),
                         "float32 accumulation"))
    out.append(Candidate("blend", "probs-back", first, replace(tool, back="probabilities"),
                         "probabilities resampled back, then argmax (nnU-Net's way)"))
    out += [Candidate("options", TOOL_KEY, r, tool, "channels-last-3d off",
                      (("channels_last", False),)) for r in ("eager", "compile-bf16")]
    exact = EXACT_RUNTIME if EXACT_RUNTIME in runtimes else first
    out += [Candidate("calls", f"calls-{k}", exact, replace(tool, batch=k),
                      f"{k} tiles per network call") for k in TILES_PER_CALL]
    out += [Candidate("streams", f"streams-{STREAMS}", r, replace(tool, streams=STREAMS),
                      f"{STREAMS} streams of 1 thread, {STREAMS} tiles in flight",
                      (("streams", STREAMS),))
            for r in dict.fromkeys((exact, first)) if r.startswith("openvino")]
    out.append(Candidate("memory", "slabs", exact, replace(tool, memory="slabs"),
                         "labels slab by slab (one slab of accumulators)"))
    if "openvino-int8" in runtimes:
        out += [Candidate("int8", TOOL_KEY, "openvino-int8", tool, how, (option,))
                for how, option in (("first and last convolution in float",
                                     ("keep_float", "first-last")),
                                    ("NNCF preset mixed (asymmetric activations)",
                                     ("preset", "mixed")))]
    return out


def method_of(c: Candidate) -> MethodSpec:
    """The candidate as a whole_ct method (its cells are built by the same function)."""
    return MethodSpec(f"3d-{c.key}", f"--fast network: {c.how}", "3d", NETWORK,
                      c.pipeline, (c.runtime,), "dice_vs_reference", quick=True,
                      note=f"stage {c.stage}")


def make_cells(bench: Any, opts: Any) -> list[Cell]:
    import sys
    from pathlib import Path

    from segbench import machine
    from segbench.benchmarks.this_cpu.plan import champion_choices, choice_cell
    from segbench.benchmarks.whole_ct.plan import ct_source, loop_cell
    from segbench.models import ModelSpec
    from segbench.pipelines import scan

    ct = ct_source(opts)
    if ct["kind"] == "phantom":
        shape, spacing = ct["shape"], ct["spacing"]
    else:  # checked whole while the command line was parsed; the check is cached
        check = scan.inspect_nifti(ct["path"])
        shape, spacing = check.shape, check.spacing
    tool = tool_pipeline(opts.quick)
    grid = tool.grid(shape, spacing)
    runtimes = tuple(r for r in RUNTIMES if r in opts.runtimes)
    focus = tuple(r for r in FOCUS if r in opts.runtimes) or (REFERENCE_RUNTIME,)
    candidates = [c for c in search(grid, opts.quick, runtimes, focus)
                  if c.is_reference or c.runtime in opts.runtimes]
    reference = None
    cells = []
    for c in candidates:
        method = method_of(c)
        cell = loop_cell(bench, opts, method, c.runtime, ct, saves_reference=c.is_reference,
                         reference=reference,
                         extra={"stage": c.stage, "variant": c.key, "how": c.how,
                                "reference_row": c.is_reference})
        if reference is None:  # every candidate is scored against the reference's labels
            reference = cell.scenario["reference"]
        if c.options:
            cell.runtime_options = registry.accepted(c.runtime, dict(c.options))
            cell.extra[fields.TAG] += "," + ",".join(f"{k}={v}" for k, v in c.options)
            cell.extra[fields.OPTIONS] = dict(c.options)
        cells.append(cell)
    if not getattr(opts, "dry_run", False) and ct["kind"] == "phantom":
        scan.load_ct(ct)  # made once and cached here, not once per cell
    if opts.quick:
        return cells
    # the 2D champion in the same run: random weights (speed does not depend on them), its
    # recipe from a champion results file, named in the row; with its exact output path when
    # the champion's is coarse (real CT punishes coarse paths: the real_ct benchmark)
    for choice in champion_choices(Path(opts.out).resolve(), machine.slug()):
        cells.append(choice_cell(bench, opts, choice, choice.runtime, ct,
                                 method=f"2d-{choice.key}", warmup="loop", estimate_passes=2,
                                 extra={"stage": "2d"}))
    from segbench import champion

    for runtime in PROBE_RUNTIMES:
        if runtime not in opts.runtimes:
            continue
        cell = bench.cell(ModelSpec("probe", champion.PROBE, opts.classes), runtime, opts,
                          fidelity=False, extra={"stage": "probe", "tag": "probe"})
        cell.shape = PROBE_SHAPE
        cell.runtime_options = registry.accepted(runtime, {"calibration": 2})
        cells.append(cell)
    if not getattr(opts, "dry_run", False):
        print(f"champion_3d: {len(cells)} cells on the {grid} grid", file=sys.stderr,
              flush=True)
    return cells
