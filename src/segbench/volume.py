"""Whole-CT scenario: what segmenting one CT costs, slice-wise in 2D or by sliding window in 3D.

A per-pass timing says little on its own: a 3D network sees a resampled grid in overlapping
tiles, maybe several networks in a row and maybe 8 mirrored copies of each tile, while a 2D
network sees every axial slice once. This module turns a method and a CT into a number of
forward passes (pure arithmetic, no clock: the harness times one pass and multiplies), and
implements nnU-Net's sliding-window inference so that the tiling it counts is the tiling it runs.

Axis order is (z, y, x) everywhere: slices first, as the arrays of nnU-Net and of our inputs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from segbench import catalogue
from segbench.catalogue import PLAIN_UNETS
from segbench.tiling import _check_step, mirror_axes, tile_count, tile_grid, tile_starts  # noqa: F401

SIGMA_SCALE = 1 / 8  # nnU-Net: Gaussian sigma = patch / 8 per axis

# --------------------------------------------------------------------------------------------
# Tiling


def padding_to_patch(image_shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) zero padding per axis that brings the image up to the patch, centred.

    nnU-Net pads this way (``pad_nd_image``) and crops the prediction back afterwards.
    """
    pads = []
    for i, p in zip(image_shape, patch):
        missing = max(p - i, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


# --------------------------------------------------------------------------------------------
# Gaussian importance map


def gaussian_importance_map(patch: Sequence[int], sigma_scale: float = SIGMA_SCALE
                            ) -> torch.Tensor:
    """Per-voxel weight of a tile's prediction: a Gaussian centred on the patch, max 1.

    Predictions near a tile's border see less context and are less reliable, so overlapping
    tiles are blended with more weight at their centres. Unlike nnU-Net, which puts a unit
    impulse at voxel ``patch // 2`` and blurs it (half a voxel off-centre for even sizes), the
    Gaussian is evaluated at voxel centres around the true centre ``(patch - 1) / 2``, so the map
    is exactly mirror-symmetric and mirroring TTA does not skew the blend. Zeros (underflow far
    from the centre) become the smallest nonzero weight, as in nnU-Net, so that no voxel can end
    with a zero weight sum.
    """
    weights = torch.ones((), dtype=torch.float64)
    for axis, size in enumerate(patch):
        coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        profile = torch.exp(-0.5 * (coords / (size * sigma_scale)) ** 2)
        shape = [1] * len(patch)
        shape[axis] = size
        weights = weights * profile.reshape(shape)
    weights = (weights / weights.max()).float()
    nonzero = weights[weights > 0]
    return torch.where(weights > 0, weights, nonzero.min())


# --------------------------------------------------------------------------------------------
# Sliding-window inference


def _as_tensor(out: Any) -> torch.Tensor:
    """A predictor's output as a float32 tensor, whatever the runtime returned."""
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError(f"predict returned {len(out)} outputs; expected one")
        out = out[0]
    if not isinstance(out, torch.Tensor):
        out = torch.from_numpy(np.asarray(out))
    return out.float()


def _predict_tile(predict: Callable[[torch.Tensor], Any], tile: torch.Tensor,
                  expected: tuple[int, ...], mirror: bool) -> torch.Tensor:
    """The mean prediction over the mirrored copies of one (1, C_in, *patch) tile."""
    combos = mirror_axes(tile.dim() - 2, mirror)
    if len(combos) == 1:  # no mirroring: the output itself, no zeroed sum, add or division
        # (each of those is a pass over (1, classes, *patch) float32: 0.75 GB a tile for the
        # 118-class --fast network, as nnU-Net's predictor also skips them)
        out = _as_tensor(predict(tile.contiguous()))
        if tuple(out.shape) != expected:
            raise ValueError(f"predict returned shape {tuple(out.shape)}; expected {expected}")
        return out
    total = torch.zeros(expected, dtype=torch.float32)
    for axes in combos:
        flipped = tile.flip(axes) if axes else tile
        out = _as_tensor(predict(flipped.contiguous()))
        if tuple(out.shape) != expected:
            raise ValueError(f"predict returned shape {tuple(out.shape)}; expected {expected}")
        total += out.flip(axes) if axes else out
    return total / len(combos)


ACCUMULATOR_DTYPES = {"float16": torch.float16, "float32": torch.float32}
WEIGHT_SCALE = 10.0  # nnU-Net scales the Gaussian to a maximum of 10 before casting it


def _accumulator_weights(patch: Sequence[int], use_gaussian: bool, dtype: torch.dtype,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """The tile weights in the accumulator's dtype, no zero among them.

    nnU-Net's predictor scales the Gaussian to a maximum of 10, casts it to the accumulator's
    dtype (half) and then replaces the zeros the cast made (float16 underflows below 6e-8, and
    a 3D Gaussian's corners are far below that) by the smallest nonzero weight, so that no
    voxel's weight sum is 0. The scale cancels in the final division.
    """
    if not use_gaussian:
        return torch.ones(tuple(patch), dtype=dtype)
    if weights is not None:  # a map made elsewhere (nnU-Net's own, for a model folder)
        if tuple(weights.shape) != tuple(patch):
            raise ValueError(f"weights of shape {tuple(weights.shape)}; the patch is "
                             f"{tuple(patch)}")
        weight = weights.to(dtype)
    else:
        weight = (gaussian_importance_map(patch) * WEIGHT_SCALE).to(dtype)
    return torch.where(weight > 0, weight, weight[weight > 0].min())


class _NoStages:
    """Stand-in for measure.StageClock when nobody asked for a breakdown."""

    @staticmethod
    def stage(name: str) -> Any:
        import contextlib

        return contextlib.nullcontext()


def sliding_window_predict(predict: Callable[[torch.Tensor], Any],
                           volume: torch.Tensor | np.ndarray,
                           patch: Sequence[int], step: float, num_classes: int,
                           mirror: bool | Sequence[int] = False, use_gaussian: bool = True,
                           accumulate: str = "float16", stages: Any = None,
                           weights: torch.Tensor | None = None, round_once: bool = False
                           ) -> torch.Tensor:
    """nnU-Net's sliding-window inference of ``volume`` (C_in, *spatial) -> (classes, *spatial).

    ``predict`` maps a float32 (1, C_in, *patch) tensor to (1, num_classes, *patch) logits
    (a tensor, an array, or a one-element list of either: a runtime's native output). The
    volume is zero-padded (centred) to at least the patch, tiled with :func:`tile_grid`, every
    tile predicted (2^dims times with mirroring), the predictions accumulated with the Gaussian
    (or uniform) weights and divided by the accumulated weights, then the padding is cropped.
    ``predict`` is called ``tile_count(...) * len(mirror_axes(dims, mirror))`` times.

    ``accumulate`` is the dtype of the logit and weight accumulators: "float16" as nnU-Net's
    predictor allocates them (half the memory of float32 over a grid of up to 118 classes;
    the result is float16 too), or "float32". ``stages`` (a ``measure.StageClock``) splits the
    time into "predict" (the network calls, mirroring included) and "accumulate" (weighting,
    adding into the accumulators, the final division). ``mirror`` True mirrors over every
    spatial axis, a sequence over those axes only (0-based). ``weights``: the importance map to
    use instead of this module's Gaussian (nnU-Net's own for a model folder's pipeline).
    ``round_once``: a float16 accumulator takes each weighted tile with one rounding, as
    nnU-Net's predictor adds its float32 product into its half buffer (bit-identical
    accumulators; the default rounds the product to float16 first, which differs in the last
    bit now and then and costs about half as much: PyTorch's in-place add of float32 into
    float16 takes a slow path, many times a same-dtype add, so one rounding is done through a
    float32 buffer).
    """
    if accumulate not in ACCUMULATOR_DTYPES:
        raise ValueError(f"accumulate must be one of {', '.join(ACCUMULATOR_DTYPES)}, "
                         f"got {accumulate!r}")
    dtype = ACCUMULATOR_DTYPES[accumulate]
    stages = stages or _NoStages()
    x = torch.as_tensor(volume, dtype=torch.float32)
    dims = len(patch)
    if x.dim() != dims + 1:
        raise ValueError(f"volume must be (C_in, *spatial) with {dims} spatial axes, "
                         f"got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[1:])
    pads = padding_to_patch(spatial, patch)
    # F.pad takes (before, after) pairs from the last axis backwards
    x = F.pad(x, [p for pair in reversed(pads) for p in pair])
    padded = tuple(x.shape[1:])

    weight = _accumulator_weights(patch, use_gaussian, dtype, weights)
    weight_f32 = weight.float()
    logits = torch.zeros((num_classes, *padded), dtype=dtype)
    weight_sum = torch.zeros(padded, dtype=dtype)
    expected = (1, num_classes, *patch)
    weighted = torch.empty((num_classes, *patch), dtype=torch.float32)
    exact = round_once and dtype != torch.float32
    weighted_acc = (torch.empty_like(weighted) if exact else
                    weighted if dtype == torch.float32 else torch.empty_like(weighted, dtype=dtype))
    for starts in itertools.product(*tile_grid(padded, patch, step)):
        window = tuple(slice(s, s + p) for s, p in zip(starts, patch))
        tile = x[(slice(None), *window)].unsqueeze(0)
        with stages.stage("predict"):
            pred = _predict_tile(predict, tile, expected, mirror)
        with stages.stage("accumulate"):
            # weighted in float32, added into the accumulator's dtype (nnU-Net's order)
            # into buffers made once, not two fresh ones per tile (0.75 GB float32 and half
            # that in float16 for the 118-class --fast network)
            torch.mul(pred[0], weight_f32, out=weighted)
            target = logits[(slice(None), *window)]
            if exact:  # float32 sum, one rounding into float16
                weighted_acc.copy_(target)
                weighted_acc += weighted
                target.copy_(weighted_acc)
            else:  # rounded to the accumulator's dtype, then added
                weighted_acc.copy_(weighted)
                target += weighted_acc
            weight_sum[window] += weight
    with stages.stage("accumulate"):
        logits /= weight_sum
    crop = tuple(slice(before, before + size) for (before, _), size in zip(pads, spatial))
    return logits[(slice(None), *crop)]


# --------------------------------------------------------------------------------------------
# CT presets


@dataclass(frozen=True)
class VolumePreset:
    """A CT as TotalSegmentator's runtime table describes it: a voxel grid and its spacing."""

    name: str
    shape: tuple[int, int, int]  # (z, y, x) voxels
    spacing_mm: tuple[float, float, float]  # (z, y, x)


PRESETS: dict[str, VolumePreset] = {
    preset.name: preset for preset in (
        VolumePreset("ct-512x512x280", (280, 512, 512), (1.5, 0.78, 0.78)),
        VolumePreset("ct-512x512x458", (458, 512, 512), (1.5, 0.78, 0.78)),
    )
}


def resampled_shape(preset: VolumePreset, spacing_mm: float) -> tuple[int, int, int]:
    """The grid a network working at isotropic ``spacing_mm`` sees: nnU-Net's rounding.

    The field of view is kept, so each axis becomes round(voxels * spacing / target).
    """
    if spacing_mm <= 0:
        raise ValueError(f"target spacing must be positive, got {spacing_mm}")
    z, y, x = (max(1, int(round(n * s / spacing_mm)))
               for n, s in zip(preset.shape, preset.spacing_mm))
    return z, y, x


# --------------------------------------------------------------------------------------------
# Whole-CT methods


@dataclass(frozen=True)
class Method:
    """How a tool segments a whole CT, reduced to what decides its number of forward passes."""

    name: str
    network: str  # a "3d" family network, or the label of a 2D model for slice-wise methods
    networks: int  # networks run one after another on every CT (TotalSegmentator: 5 parts)
    spacing_mm: float | None  # isotropic grid the networks see; None = the CT's own grid
    patch: tuple[int, int, int] | None  # (z, y, x) tile; None = whole axial slices (2D)
    step: float  # tile step as a fraction of the patch (nnU-Net's tile_step_size)
    mirror: bool  # test-time mirroring over every combination of axes

    @property
    def slice_wise(self) -> bool:
        return self.patch is None

    @property
    def dims(self) -> int:
        return 2 if self.slice_wise else 3

    @property
    def passes_per_tile(self) -> int:
        return len(mirror_axes(self.dims, self.mirror))


# The 3D methods, their networks' plans (patch, spacing) and the tools' inference settings
# (tile step, mirroring) live in the catalogue; these are the same facts in this module's terms.
TOTALSEG_PATCH = PLAIN_UNETS["totalseg-1.5mm"].patch
TOTALSEG_SPACING_MM = PLAIN_UNETS["totalseg-1.5mm"].spacing_mm
FAST_PATCH = PLAIN_UNETS["totalseg-3mm"].patch  # TotalSegmentator --fast (Dataset297) plans
FAST_SPACING_MM = PLAIN_UNETS["totalseg-3mm"].spacing_mm
TOTALSEG_STEP = catalogue.TOTALSEG_STEP
NNUNET_STEP = catalogue.NNUNET_STEP

METHODS_3D: tuple[Method, ...] = tuple(
    Method(m.name, m.network, m.parts, m.spacing_mm, m.patch, m.step, m.mirror)  # type: ignore[arg-type]
    for m in catalogue.METHODS_3D)


def slice_wise(model_2d: str) -> Method:
    """A 2D network run once on every axial slice, at the CT's own in-plane size."""
    return Method(f"2D slice-wise ({model_2d})", model_2d, 1, None, None, 1.0, False)


def forward_passes(method: Method, preset: VolumePreset) -> tuple[int, int]:
    """(tiles or slices per network, total forward passes) to segment ``preset`` with ``method``.

    Total = per-network count x networks x mirrored copies. Resampling, blending and argmax are
    not forward passes and are left out: on a CPU the passes dominate.
    """
    if method.slice_wise:
        per_network = preset.shape[0]
    else:
        assert method.spacing_mm is not None and method.patch is not None
        grid = resampled_shape(preset, method.spacing_mm)
        per_network = tile_count(grid, method.patch, method.step)
    return per_network, per_network * method.networks * method.passes_per_tile

