"""The own_model benchmark's matrix: a user's nnU-Net v2 model folder as whole-CT pipelines.

On one CT (the ``--input`` file, or the first file of an ``--input`` folder):

1. ``predictor``: nnU-Net's own ``nnUNetPredictor`` end to end at FP32 (its network in eager
   PyTorch): the reference every other row's labels are scored against (Dice, agreement);
2. the project's loop around the folder's network (nnU-Net's preprocessing and Gaussian, the
   project's sliding window, :mod:`segbench.pipelines.nnunet`) under each runtime, with the way
   back ``chunked`` (a few class maps at a time), and once under eager with nnU-Net's own
   export (``nnunet``: all class maps at once) to show what that costs, and labels per slab
   (``slabs``: the argmax at the network's spacing, far less memory, not nnU-Net's way back)
   under eager (or the first runtime given) to show what the memory trade costs in seconds;
3. with a folder of CTs, the cohort (follow-up cells, :mod:`segbench.pipelines.cohort`): the
   fastest pipeline whose labels agree with the predictor's (Dice >= 0.99) over every CT, the
   network loaded once, without and with reading and preprocessing the next CT while the
   current one runs.

``--memory-budget GB``: a cell whose estimated peak exceeds it is not run; its row carries the
estimate. A runtime whose chunked loop is over the budget gets the slab way instead, if that fits
(an answer per runtime for a tight budget). The commands as users run them
(``nnUNetv2_predict_from_modelfolder``; with ``--peers`` the real TotalSegmentator one file at a
time) are rows after the cells (:mod:`segbench.peers.nnunet_cli`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from segbench import fields
from segbench.benchmarks.whole_ct.plan import loop_protocol
from segbench.cell import Cell
from segbench.cli import UsageError
from segbench.models import ModelSpec

DICE_FLOOR = 0.99  # the faithfulness bar: a pipeline's speed counts above it
REFERENCE_RUNTIME = "eager"  # the predictor's own network runs in eager PyTorch
RUNTIMES = ("eager", "openvino-fp32", "openvino-bf16", "openvino-int8", "ort-fp32",
            "compile-bf16")
QUICK_RUNTIMES = ("eager",)
CELL_TIMEOUT = 1800.0
NIFTI_SUFFIXES = (".nii", ".nii.gz")
CHUNKED_TITLE = "project loop, class maps back a few at a time"
SLABS_TITLE = ("project loop, labels per slab (argmax at the network's spacing, nearest back: "
               "less memory, not nnU-Net's way back)")


# --------------------------------------------------------------------------------------------
# Arguments


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def input_argument(text: str) -> str:
    """``--input``: one NIfTI CT, or a folder holding only NIfTI CTs (a cohort); every file is
    checked whole (``scan.check_nifti``) before any work."""
    from segbench.pipelines import scan

    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        cts = [p for p in files if p.is_file() and _is_nifti(p)]
        others = [p.name for p in files if p not in cts]
        if not cts:
            raise argparse.ArgumentTypeError(f"{path}: no NIfTI files (.nii, .nii.gz)")
        if others:
            raise argparse.ArgumentTypeError(
                f"{path}: not only NIfTI CTs (also {', '.join(others[:3])}"
                f"{' ...' if len(others) > 3 else ''}); give a folder of CTs")
        for p in cts:
            try:
                scan.check_nifti(p)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return str(path.resolve())
    try:
        return str(Path(scan.check_nifti(path)).resolve())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of GB: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def step_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"the tile step is in (0, 1], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nnunet-model", default=None, metavar="DIR",
                        help="an nnU-Net v2 model folder (Trainer__Plans__configuration with "
                             "plans.json, dataset.json, fold_F/checkpoint_final.pth)")
    parser.add_argument("--fold", default="0", help="the fold to run (default 0)")
    parser.add_argument("--configuration", default=None,
                        help="the plans' configuration (default: the checkpoint's)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file name inside fold_F")
    parser.add_argument("--input", type=input_argument, default=None, metavar="PATH",
                        help="a CT in NIfTI, or a folder of them (a cohort)")
    parser.add_argument("--step", type=step_argument, default=0.5,
                        help="tile step as a fraction of the patch (nnU-Net's default 0.5)")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="no test-time mirroring (nnU-Net's --disable_tta)")
    parser.add_argument("--memory-budget", type=budget_argument, default=None, metavar="GB",
                        help="do not run pipelines whose estimated peak exceeds GB")
    parser.add_argument("--cohort-limit", type=int, default=None, metavar="N",
                        help="the first N CTs of the --input folder (default all)")
    parser.set_defaults(timeout=CELL_TIMEOUT)


# --------------------------------------------------------------------------------------------
# What a run reads


def model_folder(opts: Any) -> Any:
    """The checked model folder of the run (one line and exit 2 if anything is wrong)."""
    from segbench.ownnet.nnunet_folder import cached_folder

    given = opts.extra.get("nnunet_model")
    if not given:
        raise UsageError("give --nnunet-model DIR (an nnU-Net v2 model folder) or --onnx FILE; "
                         "see docs/own_model.md")
    try:
        import nnunetv2  # noqa: F401  (its pre- and post-processing are the pipeline's)
    except ImportError:
        raise UsageError("--nnunet-model needs nnU-Net: uv sync --group peers") from None
    return cached_folder(str(Path(given).expanduser().resolve()), str(opts.extra["fold"]),
                         opts.extra.get("configuration") or "", opts.extra["checkpoint"])


def cohort_files(opts: Any) -> list[str]:
    """The CTs of the run: the --input file, or the folder's NIfTI files in name order."""
    given = opts.extra.get("input")
    if not given:
        raise UsageError("give --input PATH: a CT in NIfTI or a folder of them")
    path = Path(given)
    if not path.is_dir():
        return [str(path)]
    files = sorted(str(p) for p in path.iterdir() if _is_nifti(p))
    limit = opts.extra.get("cohort_limit")
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--cohort-limit must be at least 1, got {limit}")
        files = files[:limit]
    return files


def settings(opts: Any) -> dict[str, Any]:
    return {"step": float(opts.extra.get("step") or 0.5),
            "mirror": not opts.extra.get("no_mirroring")}


# --------------------------------------------------------------------------------------------
# Cells


def spec_of(folder: Any) -> ModelSpec:
    return ModelSpec("nnunet-folder", str(folder.path), folder.classes,
                     {"fold": folder.fold, "configuration": folder.configuration,
                      "checkpoint": folder.checkpoint.name})


def reference_key(folder: Any, ct: dict[str, Any], mirror: bool, step: float) -> str:
    import json

    return json.dumps(["nnunet-predictor", str(folder.path), folder.fold, folder.configuration,
                       folder.checkpoint.name, step, mirror, ct], sort_keys=True)


def budget_check(pipe: Any, spec: ModelSpec, shape: tuple[int, ...], spacing: tuple, opts: Any
                 ) -> tuple[int, str]:
    """(estimated peak bytes of the loop, "" or why the budget refuses it)."""
    estimate = pipe.scenario_bytes(shape, spacing) + forward_bytes(spec, pipe.patch)
    budget = opts.extra.get("memory_budget")
    if budget and estimate > budget * 2**30:
        return estimate, (f"estimated peak {estimate / 2**30:.1f} GiB exceeds the "
                          f"--memory-budget of {budget:g} GB")
    return estimate, ""


def forward_bytes(spec: ModelSpec, patch: tuple[int, ...]) -> int:
    """One tile's forward footprint, from the network's structure on the meta device."""
    import torch

    from segbench.footprint import forward_memory
    from segbench.models import family

    with torch.device("meta"):
        model = family(spec.family).build_untrained(spec.name, spec.classes, **spec.options)
        estimate = forward_memory(model.eval(), torch.empty((1, 1, *patch)))
    return int(estimate["forward_peak_bytes"])


def loop_cell(bench: Any, opts: Any, folder: Any, spec: ModelSpec, runtime: str,
              ct: dict[str, Any], pipe: Any, shape: tuple, spacing: tuple, *, method: str,
              title: str, reference: str, saves: bool) -> Cell:
    estimate, refused = budget_check(pipe, spec, shape, spacing, opts)
    buffers = pipe.scenario_bytes(shape, spacing)
    extra = {"method": method, "title": title, "tag": method, "nnunet_model": folder.describe(),
             "estimated_peak_bytes": estimate}
    if refused:
        extra["budget_refused"] = refused
    scenario = {"kind": "whole_ct", "ct": ct, "pipeline": pipe.to_dict(),
                "quality": "dice_vs_reference", "reference": reference,
                "saves_reference": saves, "calibration": 4 if opts.quick else 8,
                "warmup": "pass", "estimate_passes": 1, "scenario_bytes": buffers}
    return Cell(benchmark=bench.name, model=spec, runtime=runtime, shape=(1, 1, *pipe.patch),
                threads=opts.threads, protocol=loop_protocol(1, opts.quick), fidelity=False,
                extra=extra, scenario=scenario)


def make_cells(bench: Any, opts: Any) -> list[Cell]:
    """The nnU-Net folder's cells (``--nnunet-model``) and the ONNX file's (``--onnx``,
    :func:`segbench.ownnet.onnx_file.onnx_cells`), on the first CT of ``--input``."""
    from segbench.ownnet.onnx_file import onnx_cells

    if not opts.extra.get("nnunet_model") and not opts.extra.get("onnx"):
        raise UsageError("give --nnunet-model DIR (an nnU-Net v2 model folder) or --onnx FILE; "
                         "see docs/own_model.md")
    files = cohort_files(opts)
    cells = nnunet_cells(bench, opts, files) if opts.extra.get("nnunet_model") else []
    if opts.extra.get("onnx"):
        explicit = list(opts.runtimes) != list(bench.runtimes) and not opts.quick
        cells += onnx_cells(bench, opts, {"kind": "nifti", "path": files[0]},
                            runtimes=list(opts.runtimes) if explicit else None)
    return cells


def nnunet_cells(bench: Any, opts: Any, files: list[str]) -> list[Cell]:
    from segbench.pipelines import scan
    from segbench.pipelines.nnunet import NnunetPipeline

    folder = model_folder(opts)
    first = scan.inspect_nifti(files[0])
    shape, spacing = tuple(first.shape), tuple(first.spacing)
    ct = {"kind": "nifti", "path": files[0]}
    spec = spec_of(folder)
    s = settings(opts)
    ref = reference_key(folder, ct, s["mirror"], s["step"])
    cells = [loop_cell(bench, opts, folder, spec, REFERENCE_RUNTIME, ct,
                       NnunetPipeline.of_folder(folder, predictor=True, **s), shape, spacing,
                       method="predictor", title="nnUNetPredictor (nnU-Net's own, FP32)",
                       reference=ref, saves=True),
             loop_cell(bench, opts, folder, spec, "eager", ct,
                       NnunetPipeline.of_folder(folder, back="nnunet", **s), shape, spacing,
                       method="loop-nnunet-back",
                       title="project loop, nnU-Net's export (all class maps at once)",
                       reference=ref, saves=False)]
    slab_runtime = REFERENCE_RUNTIME if REFERENCE_RUNTIME in opts.runtimes else opts.runtimes[0]
    for runtime in opts.runtimes:
        chunked, slabs = (
            loop_cell(bench, opts, folder, spec, runtime, ct,
                      NnunetPipeline.of_folder(folder, back=back, **s), shape, spacing,
                      method=method, title=title, reference=ref, saves=False)
            for back, method, title in (("chunked", "loop", CHUNKED_TITLE),
                                        ("slabs", "loop-slabs", SLABS_TITLE)))
        cells.append(chunked)
        over = fields.BUDGET_REFUSED in chunked.extra and fields.BUDGET_REFUSED not in slabs.extra
        if runtime == slab_runtime or over:  # the slab way beside the full ways, or instead
            cells.append(slabs)
    if not getattr(opts, "dry_run", False):
        print(f"model folder {folder.path.name} ({folder.classes} classes, patch "
              f"{'x'.join(map(str, folder.patch))}); CT {Path(files[0]).name}"
              + (f"; cohort of {len(files)}" if len(files) > 1 else ""),
              file=sys.stderr, flush=True)
    return cells


# --------------------------------------------------------------------------------------------
# The cohort (follow-up: the pipeline is chosen from the per-CT rows)


def best_loop(records: list[Any]) -> Any:
    """The fastest project loop whose labels agree with the predictor's (Dice >= 0.99): a
    chunked way back or labels per slab (the way a tight --memory-budget leaves)."""
    ok = [r for r in records if r.ok and r.timing
          and r.extra.get("method") in ("loop", "loop-slabs")
          and (r.extra.get("dice_vs_eager") or 0.0) >= DICE_FLOOR]
    return min(ok, key=lambda r: 1.0 / r.timing["throughput"]) if ok else None


def cohort_cells(bench: Any, opts: Any, records: list[Any]) -> list[Cell]:
    """Over every CT of an --input folder: the best loop, without and with overlap."""
    files = cohort_files(opts)
    if len(files) < 2 or not opts.extra.get("nnunet_model"):
        return []
    best = best_loop(records)
    if best is None:
        print("cohort: no pipeline agrees with nnUNetPredictor (Dice >= 0.99); not run",
              file=sys.stderr, flush=True)
        return []
    from segbench.pipelines.nnunet import NnunetPipeline

    folder = model_folder(opts)
    pipe = NnunetPipeline.from_dict(best.extra["pipeline"])
    cells = []
    for overlap in (False, True):
        label = "overlapped" if overlap else "one after another"
        cells.append(Cell(
            benchmark=bench.name, model=spec_of(folder), runtime=best.runtime,
            shape=(1, 1, *pipe.patch), threads=opts.threads,
            protocol=loop_protocol(1, opts.quick), fidelity=False,
            extra={"method": "cohort", "tag": f"cohort, {label}",
                   "title": f"cohort of {len(files)} CTs, {label}", "overlap": overlap,
                   "nnunet_model": folder.describe(), "chosen_from": best.key},
            scenario={"kind": "cohort", "files": files, "pipeline": pipe.to_dict(),
                      "overlap": overlap, "calibration": 4 if opts.quick else 8}))
    return cells


def hours_per_thousand(cts_per_hour: float) -> float:
    return 1000.0 / cts_per_hour if cts_per_hour > 0 else math.inf
