"""What the this_cpu benchmark runs: the pipelines that matter, once each, on one whole CT.

The project's question for a user's CPU, answered in minutes instead of hours: seconds per
whole CT (and per slice) of

- the original 2D recipe (MobileNetV4-Conv-Small + Semantic FPN 128, labels at full
  resolution) under its runtime of the champion benchmark's baseline;
- the 2D champion (network, output path, slices per call and runtime read from a champion
  results file: this machine's, else the newest committed one, named in the row);
- when the champion's output path decides labels on a coarser grid, the same network with the
  fastest exact path of that run beside it (real CT punishes coarse paths: ``real_ct``);
- TotalSegmentator --fast's network (3 mm sliding window) under the fastest runtime whose labels
  stay with its FP32 eager ones in a whole_ct results file (else OpenVINO bf16).

Every pipeline runs with random weights: speed does not depend on the weights (the trained
benchmarks time random-weight twins of their trained rows to show it), so nothing is trained
and the first table arrives after one loop per pipeline. Quality columns are not measured
here: the view quotes them from the whole_ct (phantom) and real_ct (real CT) results files,
naming the machine and run they come from.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench import fields
from segbench.benchmarks.this_cpu.view import ORDER
from segbench.catalogue import CLASSES_2D, Pipeline
from segbench.cell import Cell
from segbench.models import ModelSpec
from segbench.models.nets3d import TOTALSEG_FAST_OUTPUTS
from segbench.pipelines import scan
from segbench.results import full_results_this_machine_first

NAME = "this_cpu"
ORIGINAL_NETWORK = "mobilenetv4_conv_small"  # + FPN 128: the original recipe
ORIGINAL_RUNTIME = "ort-fp32"  # the champion benchmark's baseline runtime
FALLBACK_3D_RUNTIME = "openvino-bf16"
QUICK_RUNTIME = "eager"  # --quick: no compile or export, seconds per cell
CLASSES_3D = TOTALSEG_FAST_OUTPUTS
THREE_D = "totalseg-3mm"


@dataclass(frozen=True)
class Choice:
    """One pipeline of the table: what it is, how it runs, and where the choice came from."""

    key: str  # "original" | "champion" | "champion-exact" | "3d-fast"
    title: str
    network: str
    runtime: str
    pipeline: Pipeline
    source: str = ""  # the results file the choice was read from ("" = built in)

    def spec(self) -> ModelSpec:
        if self.pipeline.kind == "2d":  # no "train" option: random weights, nothing trained
            return ModelSpec("fpn-labels", self.network, self.pipeline.classes,
                             {"path": self.pipeline.path})
        return ModelSpec("3d", self.network, self.pipeline.classes)


def champion_choices(results_dir: Path, slug: str) -> list[Choice]:
    """The champion pipeline (and its exact-path twin when its path is coarse) from the first
    champion results file that names one; [] when none does."""
    from segbench import champion

    for f in full_results_this_machine_first(results_dir, "champion", slug):
        info = champion.recipe(f.records)
        if info is None:
            continue
        net = champion.network_name(info["network"], info["width"])
        source = f.path.name
        out = [Choice("champion", f"2D champion ({info['network']} + FPN {info['width']}, "
                      f"path {info['path']})", net, info["runtime"],
                      _pipe_2d(net, info["batch"], info["path"]), source)]
        if info["path"] in champion.COARSE_PATHS:
            exact = champion.fastest_exact_path(f.records, info["network"], info["width"])
            if exact is not None:
                row = exact.extra[fields.ROW]
                out.append(Choice("champion-exact", f"2D champion network, exact path "
                                  f"{row['path']}", net, row["runtime"],
                                  _pipe_2d(net, row["batch"], row["path"]), source))
        return out
    return []


def best_3d_runtime(results_dir: Path, slug: str) -> tuple[str, str]:
    """(runtime, source file) of the 3D champion when a champion_3d run crowned one at the
    tool's settings (the search's rule: fastest within 0.01 Dice of FP32 eager), else of the
    fastest whole_ct --fast loop that keeps its FP32 eager labels."""
    from segbench.benchmarks.champion_3d import view as searched
    from segbench.benchmarks.whole_ct.view import keeps_output, seconds_per_ct

    for f in full_results_this_machine_first(results_dir, "champion_3d", slug):
        best = searched.champion(f.records)
        if best is not None:
            if (best.extra.get(fields.VARIANT) == searched.TOOL_KEY
                    and not best.extra.get(fields.OPTIONS)):
                return best.runtime, f.path.name
            break  # another pipeline won: this_cpu times the tool's settings only
    for f in full_results_this_machine_first(results_dir, "whole_ct", slug):
        rows = [(seconds_per_ct(r), r) for r in f.records
                if r.extra.get(fields.METHOD) == "totalseg-fast" and not r.quick
                and seconds_per_ct(r) and keeps_output(r)]
        if rows:
            return min(rows, key=lambda item: item[0])[1].runtime, f.path.name
    return FALLBACK_3D_RUNTIME, ""


def _pipe_2d(network: str, batch: int, path: str) -> Pipeline:
    return Pipeline("2d", network, CLASSES_2D, batch=batch, path=path)


def _pipe_3d(quick: bool) -> Pipeline:
    from segbench import volume

    patch = (32, 48, 48) if quick else volume.FAST_PATCH
    return Pipeline("3d", THREE_D, CLASSES_3D, spacing_mm=volume.FAST_SPACING_MM, patch=patch,
                    step=volume.TOTALSEG_STEP, back="nearest")


def choices(results_dir: Path, slug: str, quick: bool) -> list[Choice]:
    """The pipelines of a run, most important first (a run cut short keeps the answer)."""
    out = [Choice("original", "2D original recipe (MobileNetV4-Conv-Small + FPN 128, path "
                  "full)", ORIGINAL_NETWORK, ORIGINAL_RUNTIME, _pipe_2d(ORIGINAL_NETWORK, 1,
                                                                          "full"))]
    out += champion_choices(results_dir, slug)
    runtime, source = best_3d_runtime(results_dir, slug)
    out.append(Choice("3d-fast", "TotalSegmentator --fast network (3 mm)", THREE_D, runtime,
                      _pipe_3d(quick), source))
    if quick:  # a smoke run: the same pipelines under eager, nothing compiled or exported
        out = [Choice(c.key, c.title, c.network, QUICK_RUNTIME, c.pipeline, c.source)
               for c in out]
    return out


def ct_source(opts: Any) -> dict[str, Any]:
    from segbench.benchmarks.whole_ct.plan import ct_source as whole_ct_source

    return whole_ct_source(opts)


def choice_cell(bench: Any, opts: Any, c: Choice, runtime: str, ct: dict[str, Any], *,
                method: str | None = None, warmup: str = "pass", estimate_passes: int = 0,
                extra: dict[str, Any] | None = None) -> Cell:
    """One whole-CT loop of a chosen pipeline with random weights, timed once; no quality is
    measured (it is quoted from other runs). champion_3d times the 2D champion with it too."""
    from segbench.benchmarks.whole_ct.plan import loop_protocol

    pipe = c.pipeline
    shape = (pipe.batch, 3, 1, 1) if pipe.kind == "2d" else (1, 1, *pipe.patch)
    key = method or c.key
    return Cell(
        benchmark=bench.name, model=c.spec(), runtime=runtime, shape=shape,
        threads=opts.threads, protocol=loop_protocol(1, opts.quick), fidelity=False,
        extra={"method": key, "title": c.title, "source": c.source, "tag": key, **(extra or {})},
        scenario={"kind": "whole_ct", "ct": ct, "pipeline": pipe.to_dict(),
                  "quality": "none", "calibration": 4 if opts.quick else 8,
                  "warmup": warmup, "estimate_passes": estimate_passes})


def make_cells(bench: Any, opts: Any) -> list[Cell]:
    from segbench import machine
    from segbench import runtimes as registry

    ct = ct_source(opts)
    # --runtimes given: every pipeline under each of them; else each under its own
    explicit = opts.runtimes not in ([QUICK_RUNTIME], list(registry.names()))
    cells = []
    for c in choices(Path(opts.out).resolve(), machine.slug(), opts.quick):
        if c.key not in opts.models:
            continue
        for runtime in (opts.runtimes if explicit else [c.runtime]):
            cells.append(choice_cell(bench, opts, c, runtime, ct))
    if cells and not getattr(opts, "dry_run", False) and ct["kind"] == "phantom":
        print("phantom CT ...", file=sys.stderr, flush=True)
        scan.load_ct(ct)  # made once and cached, not once per cell
    return cells


KEYS = ORDER  # the --models names, most important first


def nifti_argument(text: str) -> str:
    from segbench.benchmarks.whole_ct.plan import nifti_argument as check

    return check(text)
