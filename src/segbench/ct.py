"""From measured forward passes to seconds per whole CT (the 2d_vs_3d benchmark's tables).

Users segment CTs, not patches. A method (volume.Method) says how many forward passes of which
input shape a CT needs; the harness measures one pass of that shape; this module joins the two,
adds the memory a whole-CT run needs, and checks the per-pass model against a measured run of
the real tiled loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from segbench import fields, volume
from segbench.models import ModelSpec
from segbench.models.nets3d import TIMED_PART, TOTALSEG_PARTS, true_outputs
from segbench.results import Record
from segbench.tables import DASH

DEFAULT_PRESET = volume.PRESETS["ct-512x512x280"]
# nnU-Net v2's predictor (nnUNetPredictor in predict_from_raw_data.py) accumulates the
# weighted logits and the summed weights over the padded grid in float16
ACCUMULATOR_BYTES = 2


def network_outputs(method: volume.Method, classes: int) -> tuple[int, ...]:
    """Outputs of each network ``method`` runs, in order, from TotalSegmentator's class map.

    TotalSegmentator's default runs five part networks (25, 27, 19, 24 and 27 outputs) and
    --fast one network of 118. Other methods (nnU-Net defaults on a hypothetical single
    network, STU-Net, 2D) run ``classes`` outputs.
    """
    real = true_outputs(method.network) if not method.slice_wise else ()
    if len(real) == method.networks:
        return real
    return (classes,) * method.networks


def classes_per_network(method: volume.Method, classes: int) -> int:
    """Outputs of the network whose pass is timed for ``method``.

    For TotalSegmentator's five parts that is the organs network (the first the tool runs);
    the parts differ only in their 1x1x1 heads, about 0.1 % of a tile's FLOPs, so one timed
    part stands for all five.
    """
    outputs = network_outputs(method, classes)
    if len(outputs) == len(TOTALSEG_PARTS) and not method.slice_wise:
        return TOTALSEG_PARTS[TIMED_PART][1]
    return outputs[0]


@dataclass(frozen=True)
class Pass:
    """One forward-pass shape a method needs measured."""

    spec: ModelSpec
    spatial: tuple[int, ...]


def method_pass(method: volume.Method, preset: volume.VolumePreset, classes: int) -> Pass:
    """The network and input shape of the forward pass ``method`` repeats on ``preset``."""
    if method.slice_wise:
        return Pass(ModelSpec.from_label(method.network, classes), tuple(preset.shape[1:]))
    spec = ModelSpec("3d", method.network, classes_per_network(method, classes))
    return Pass(spec, tuple(method.patch))


def find(records: Sequence[Record], spec: ModelSpec, spatial: Sequence[int], runtime: str,
         loop: bool = False) -> Record | None:
    """The record measuring ``spec`` on ``spatial`` (a tiled-loop record if ``loop``)."""
    for r in records:
        if (r.family == spec.family and network_name(r) == spec.name
                and r.classes == spec.classes and tuple(r.shape[2:]) == tuple(spatial)
                and r.runtime == runtime and bool(r.extra.get(fields.LOOP)) == loop):
            return r
    return None


def network_name(r: Record) -> str:
    """The network's name inside its family."""
    return r.name


def seconds_per_pass(r: Record | None) -> float | None:
    if r is None or not r.ok or not r.throughput:
        return None
    return r.batch / r.throughput


def whole_ct_memory(method: volume.Method, preset: volume.VolumePreset, r: Record,
                    classes: int) -> int | None:
    """Peak bytes of one CT: a pass's forward peak plus, for tiled 3D, nnU-Net's float16
    logit and weight accumulators over the padded grid (2D keeps only a label map).

    Networks run one after another, so the accumulators of the network with the most outputs
    set the peak; ``classes`` is what the other methods output.
    """
    peak = r.memory.get("forward_peak_bytes")
    if peak is None:
        return None
    if method.slice_wise:
        return int(peak + math.prod(preset.shape))  # uint8 labels of the whole volume
    grid = volume.resampled_shape(preset, method.spacing_mm)
    padded = [max(g, p) for g, p in zip(grid, method.patch)]
    outputs = max(network_outputs(method, classes))
    return int(peak + math.prod(padded) * (outputs + 1) * ACCUMULATOR_BYTES)


def ct_rows(methods: Sequence[volume.Method], preset: volume.VolumePreset, classes: int,
            records: Sequence[Record], runtime: str) -> list[dict[str, Any]]:
    """One row per method: forward passes, measured seconds per pass, seconds per CT, memory."""
    rows = []
    for method in methods:
        need = method_pass(method, preset, classes)
        r = find(records, need.spec, need.spatial, runtime)
        per_network, passes = volume.forward_passes(method, preset)
        sec = seconds_per_pass(r)
        rows.append({
            "method": method.name,
            "network": r.extra.get(fields.DISPLAY, need.spec.name) if r else need.spec.name,
            "networks": method.networks, "per_network": per_network, "passes": passes,
            "slice_wise": method.slice_wise, "seconds_per_pass": sec,
            "seconds_per_ct": passes * sec if sec else None,
            "memory": whole_ct_memory(method, preset, r, classes) if r and r.ok else None,
            "status": "ok" if sec else (f"{r.status}: {r.reason}" if r else "not measured"),
            "assumptions": assumptions(method, preset, need),
        })
    return rows


def assumptions(method: volume.Method, preset: volume.VolumePreset, need: Pass) -> str:
    if method.slice_wise:
        return f"{preset.shape[0]} axial slices at {need.spatial[0]}x{need.spatial[1]}"
    grid = "x".join(map(str, volume.resampled_shape(preset, method.spacing_mm)))
    parts = [f"{method.spacing_mm:g} mm grid {grid}", f"patch {'x'.join(map(str, method.patch))}",
             f"step {method.step:g}", "8x mirroring" if method.mirror else "no mirroring"]
    outputs = network_outputs(method, need.spec.classes)
    if method.networks > 1:
        parts.append(f"{method.networks} part networks of {'/'.join(map(str, outputs))} outputs, "
                     f"each timed as the {need.spec.classes}-output one")
    else:
        parts.append(f"{outputs[0]} outputs")
    return ", ".join(parts)


def methods_for(labels: Sequence[str]) -> list[volume.Method]:
    """The whole-CT methods whose networks are among ``labels`` (3D names or 2D labels)."""
    return ([m for m in volume.METHODS_3D if m.network in labels]
            + [volume.slice_wise(label) for label in labels if "+" in label])


def rows_for(records: Sequence[Record], runtime: str,
             preset: volume.VolumePreset = DEFAULT_PRESET) -> list[dict[str, Any]]:
    """Whole-CT rows for every method whose networks these records measured."""
    labels = list(dict.fromkeys(r.model for r in records if r.runtime == runtime))
    # the label count of the other methods: TotalSegmentator's own networks have their own
    classes = max((r.classes or 0 for r in records
                   if r.classes not in true_outputs(network_name(r))), default=0)
    return ct_rows(methods_for(labels), preset, classes, records, runtime)


def loop_check(records: Sequence[Record], runtime: str) -> list[dict[str, Any]]:
    """Measured tiled loops against tiles x measured seconds per tile."""
    out = []
    for r in records:
        if not r.extra.get(fields.LOOP) or r.runtime != runtime:
            continue
        spec = ModelSpec("3d", network_name(r), r.classes)
        tile = find(records, spec, r.shape[2:], runtime)
        per_tile = seconds_per_pass(tile)
        predicted = r.extra[fields.PASSES] * per_tile if per_tile else None
        measured = seconds_per_pass(r)
        out.append({"network": r.extra.get(fields.DISPLAY, spec.name),
                    "volume": "x".join(map(str, r.extra[fields.VOLUME][1:])),
                    "tiles": r.extra[fields.PASSES], "measured": measured, "predicted": predicted,
                    "ratio": measured / predicted if measured and predicted else None,
                    "status": "ok" if r.ok else f"{r.status}: {r.reason}"})
    return out


def fmt_seconds(x: float | None) -> str:
    if x is None:
        return DASH
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def fmt_bytes(n: int | None) -> str:
    return DASH if n is None else f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


