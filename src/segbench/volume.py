"""Whole-CT scenario: what segmenting one CT costs, slice-wise in 2D or by sliding window in 3D.

A per-pass timing says little on its own: a 3D network sees a resampled grid in overlapping
tiles, maybe several networks in a row and maybe 8 mirrored copies of each tile, while a 2D
network sees every axial slice once. This module turns a method and a CT into a number of
forward passes (pure arithmetic, no clock: the harness times one pass and multiplies); the
sliding window that runs the tiling it counts is :mod:`segbench.sliding` (its names are
re-exported here).

Axis order is (z, y, x) everywhere: slices first, as the arrays of nnU-Net and of our inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from segbench import catalogue
from segbench.catalogue import PLAIN_UNETS
from segbench.sliding import (  # noqa: F401  (the sliding window's home; names kept here)
    ACCUMULATOR_DTYPES,
    SIGMA_SCALE,
    WEIGHT_SCALE,
    _accumulator_weights,
    _NoStages,
    _predict_tile,
    gaussian_importance_map,
    low_memory_bytes,
    padding_to_patch,
    sliding_window_labels,
    sliding_window_predict,
)
from segbench.tiling import _check_step, mirror_axes, tile_count, tile_grid, tile_starts  # noqa: F401

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

