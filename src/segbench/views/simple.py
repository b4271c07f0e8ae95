"""The tables of the benchmarks whose view is a few lines: 2d_vs_3d (per forward pass),
combined (FPN versus UNet pairs) and fidelity (Dice of every runtime on trained weights)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tabulate import tabulate

from segbench import fields
from segbench.fidelity import DICE_TOLERANCE
from segbench.machine import describe
from segbench.results import Record, ResultsFile
from segbench.tables import (
    DASH,
    dice_drops,
    dice_verdicts,
    millions,
    num,
    status_text,
    throughput_text,
)

# --- 2d_vs_3d -----------------------------------------------------------------------------------

SLICE_512 = 512 * 512  # voxels of one 512x512 slice: the unit of "slice equivalents"
PATCH_3D = (64, 128, 128)  # the originals' 128x128x64 patch, (z, y, x)


def patch_row(r: Record) -> list[str]:
    """Per-pass row: time, 512x512-slice equivalents per second, efficiency."""
    voxels = math.prod(r.shape[2:]) * r.batch
    equiv = r.throughput / r.batch * voxels / SLICE_512 if r.ok and r.throughput else None
    kind = "3D" if r.family == "3d" else "2D"
    return [fields.display(r), kind, millions(r.params),
            "x".join(map(str, r.shape[2:])),
            num(r.timing["latency_p50_ms"], 0) if r.ok else DASH,
            num(equiv, 1), num(equiv / (r.params / 1e6), 2) if equiv and r.params else DASH,
            "ok" if r.ok else f"{r.status}: {r.reason}"]


def passes_tables(view: Any, results: ResultsFile) -> list[tuple[str, str]]:
    records = results.records
    patch_rows = [patch_row(r) for r in records if not r.extra.get(fields.LOOP)
                  and (r.family != "3d" or tuple(r.shape[2:]) == PATCH_3D)
                  and (r.family == "3d" or r.shape[2] == r.shape[3])]
    return [("Per forward pass (the originals' comparison)", tabulate(
        patch_rows, headers=["model", "type", "params", "input", "ms / pass (p50)",
                             "512x512-slice equivalents / s", "equiv/s per M params", "status"],
        tablefmt="github", disable_numparse=True))]


# --- combined -----------------------------------------------------------------------------------

PAIR_HEADERS = ["encoder", "FPN img/s", "UNet img/s", "FPN / UNet speed", "params FPN / UNet",
                "UNet extra params", "GFLOPs FPN / UNet", "UNet FLOPs x"]


def speed(r: Record | None) -> str:
    return DASH if r is None else throughput_text(r.timing) if r.ok else status_text(r)


def pair_row(encoder: str, fpn: Record | None, unet: Record | None) -> list[str]:
    name = (fpn or unet).extra.get(fields.DISPLAY, encoder).split(" + ")[0]  # type: ignore[union-attr]
    if not (fpn and unet and fpn.ok and unet.ok):
        return [name, speed(fpn), speed(unet)] + [DASH] * 5
    p_fpn, p_unet = fpn.extra[fields.PARAMS_ENC_DEC], unet.extra[fields.PARAMS_ENC_DEC]
    return [name, speed(fpn), speed(unet), num(fpn.throughput / unet.throughput, 2),
            f"{millions(p_fpn)} / {millions(p_unet)}", f"+{(p_unet - p_fpn) / 1e6:.2f}M",
            f"{num(fpn.gflops, 2)} / {num(unet.gflops, 2)}", f"{unet.gflops / fpn.gflops:.2f}x"]


def pair_tables(view: Any, results: ResultsFile) -> list[tuple[str, str]]:
    pairs: dict[str, dict] = {}
    for r in results.records:
        pairs.setdefault(r.name, {})[r.family] = r
    rows = [pair_row(enc, p.get("fpn"), p.get("unet")) for enc, p in pairs.items()]
    rows.sort(key=lambda row: -float(row[3]) if row[3] != DASH else 0.0)
    return [("", tabulate(rows, headers=PAIR_HEADERS, tablefmt="github",
                          disable_numparse=True))]


# --- fidelity -----------------------------------------------------------------------------------

def fidelity_tables(view: Any, results: ResultsFile) -> list[tuple[str, str]]:
    records = results.records
    drops = dice_drops(records)
    rows = []
    for r in records:
        fid = r.fidelity or {}
        rows.append([fields.display(r), r.runtime,
                     num(r.extra.get(fields.DICE), 3) if r.ok else DASH,
                     (f"{drops[(r.model, r.runtime)]:+.3f}"
                      if (r.model, r.runtime) in drops else DASH),
                     num(fid.get("label_agreement"), 2), num(fid.get("sqnr_db"), 1),
                     num(r.throughput, 1) if r.ok else DASH, status_text(r)])
    main_table = tabulate(rows, headers=["network", "runtime", "Dice vs truth",
                                         "Dice drop vs FP32", "label agree vs FP32 (%)",
                                         "SQNR (dB)", "img/s", "status"],
                          tablefmt="github", disable_numparse=True)
    names = {r.model: fields.display(r) for r in records}
    summary = tabulate(
        [[names[model], ", ".join(keep) or "none", ", ".join(rt for rt, _ in lose) or "none"]
         for model, (keep, lose) in dice_verdicts(records).items()],
        headers=["network", f"keeps Dice within {DICE_TOLERANCE} of FP32",
                 f"loses more than {DICE_TOLERANCE}"], tablefmt="github", disable_numparse=True)
    recipe = next((r.weights for r in records if r.weights != "random"), "?")
    return [(f"Dice on held-out phantoms, weights {recipe}", main_table),
            ("Which runtimes keep the trained network's quality", summary)]


def fidelity_plots(results: ResultsFile, out: Path) -> list[Path | None]:
    from segbench import plots

    return [plots.speed_quality_plot(results.records, out / "speed_quality.png",
                                     machine=describe(results.machine))]
