"""The whole_ct benchmark's matrix: which pipelines run under which runtimes, with which
weights, on which CT. Its tables are :mod:`segbench.benchmarks.whole_ct.view`'s.

A method is a :class:`segbench.catalogue.MethodSpec` (network, pipeline, runtimes, quality
kind); the matrix is the catalogue's list :data:`segbench.catalogue.METHODS`, most important
first, because results are saved after every cell and a long run may be cut short. Another
kind of row (e.g. the real TotalSegmentator CLI) is one more entry in that list plus whatever
its cells need.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from segbench.catalogue import (  # noqa: F401  (METHODS and ALL_RUNTIMES: read by the script)
    ALL_RUNTIMES,
    BEST_2D,
    CHAMPION_TITLE,
    IN_GRAPH,
    METHODS,
    MethodSpec,
    slice_pipeline,
)
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.pipelines import scan

QUICK_CT = {"kind": "phantom", "shape": [48, 96, 96], "spacing": [3.0, 3.0, 3.0],
            "seed": scan.PHANTOM_SEED}
FULL_CT = {"kind": "phantom", "shape": list(scan.PHANTOM_SHAPE),
           "spacing": list(scan.PHANTOM_SPACING), "seed": scan.PHANTOM_SEED}
CELL_TIMEOUT = 1800.0  # s; an STU-Net loop takes minutes, the harness's default is 600 s


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
                      slice_pipeline(network, best["batch"], best["path"]), (best["runtime"],),
                      "dice",
                      note=f"batch {best['batch']}, path {best['path']}, from the champion "
                           f"benchmark's run on this machine; {IN_GRAPH}"), ""


def stand_in(method: MethodSpec, why: str) -> MethodSpec:
    """The 2d-best stand-in, saying which network and path it runs instead and why."""
    network, runtime, path, batch = BEST_2D
    return replace(method, stand_in=why,
                   note=f"NOT the champion ({why}); ran {network} + FPN 128 under {runtime}, "
                        f"batch {batch}, path {path} instead; {IN_GRAPH}")


def recipe_3d(quick: bool) -> dict[str, Any]:
    from segbench.models.nets3d_phantom import Recipe3D

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
        return str(Path(scan.check_nifti(text)).resolve())
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


def reference_key(method: MethodSpec, spec: ModelSpec, ct: dict[str, Any]) -> str:
    """The key the FP32 eager loop saves its labels under and the other runtimes of the same
    network, weights, pipeline and CT compare with (a retrained network never meets old
    labels: the weights recipe is part of it)."""
    return json.dumps([method.network, spec.family, spec.options, method.pipeline.to_dict(), ct],
                      sort_keys=True)


def loop_cell(bench: Any, opts: Any, method: MethodSpec, runtime: str, ct: dict[str, Any], *,
              loops: int = 1, unusual: Sequence[str] = (), reference: str | None = None,
              saves_reference: bool | None = None, extra: dict[str, Any] | None = None) -> Cell:
    """One whole-CT loop cell: ``method``'s pipeline under ``runtime`` on ``ct``. Its labels
    are compared with those saved under ``reference`` (default: the method's own FP32 eager
    loop, which saves them); ``saves_reference`` overrides which cell saves (a search whose
    eager variants are scored against one reference)."""
    spec = model_spec(method, ct, opts.quick)
    pipe = method.pipeline
    long = method.long or opts.quick
    shape = (pipe.batch, 3, 1, 1) if pipe.kind == "2d" else (1, 1, *pipe.patch)
    labels = {"method": method.key, "title": method.title, "networks": method.networks,
              "note": method.note, "tag": method.key}
    if method.stand_in:
        labels["stand_in"] = method.stand_in
    if unusual:
        labels["ct_unusual"] = list(unusual)
    scenario = {"kind": "whole_ct", "ct": ct, "pipeline": pipe.to_dict(),
                # Dice against a phantom's truth needs a phantom; against a reference, not
                "quality": ("agreement" if method.quality == "dice" and ct["kind"] != "phantom"
                            else method.quality),
                "reference": reference or reference_key(method, spec, ct),
                "calibration": 4 if opts.quick else 8,
                "warmup": "pass" if long else "loop",
                "estimate_passes": 1 if long else 2}
    if saves_reference is not None:
        scenario["saves_reference"] = saves_reference
    return Cell(benchmark=bench.name, model=spec, runtime=runtime, shape=shape,
                threads=opts.threads, protocol=loop_protocol(loops, opts.quick), fidelity=False,
                extra={**labels, **(extra or {})}, scenario=scenario)


def make_cells(bench: Any, opts: Any) -> list[Cell]:
    ct = ct_source(opts)
    loops = opts.extra.get("loops") or 1
    if loops < 1:
        from segbench.cli import UsageError

        raise UsageError(f"--loops must be at least 1, got {loops}")
    # a CT given with --input was checked whole at argument time; what only looks unusual
    # about it (a slab, a head, padded slices) goes into every row
    unusual = (list(scan.inspect_nifti(ct["path"]).unusual) if ct["kind"] == "nifti"
               else [])
    if unusual and not getattr(opts, "dry_run", False):
        print(f"note: unusual CT ({'; '.join(unusual)}); it runs, and its rows say so",
              file=sys.stderr, flush=True)
    cells = [loop_cell(bench, opts, method, runtime, ct, loops=loops, unusual=unusual)
             for method, runtimes in selected(opts) for runtime in runtimes]
    if cells and not getattr(opts, "dry_run", False):
        if ct["kind"] == "phantom":
            print("phantom CT ...", file=sys.stderr, flush=True)
            scan.load_ct(ct)  # made once and cached, not once per cell
    return cells
