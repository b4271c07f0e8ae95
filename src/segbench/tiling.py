"""Sliding-window arithmetic, nnU-Net's: tile starts, tile counts, mirrored passes, the grid at
a target spacing. Pure Python, no array library: the whole-CT tables count passes with it and
:mod:`segbench.volume` tiles with the very same functions.

Axis order is (z, y, x) everywhere.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence


def _check_step(step: float) -> None:
    if not 0 < step <= 1:
        raise ValueError(f"tile step must be a fraction of the patch in (0, 1], got {step}")


def tile_starts(image: int, patch: int, step: float) -> list[int]:
    """Start offsets of the tiles along one axis, nnU-Net's ``compute_steps_for_sliding_window``.

    The tile count is the smallest that keeps consecutive tiles at most ``patch * step`` apart;
    the tiles are then spread evenly so that the first starts at 0 and the last ends at the
    image's edge. An image smaller than the patch is padded first, so it gets one tile.
    """
    _check_step(step)
    image = max(image, patch)
    span = image - patch
    count = math.ceil(span / (patch * step)) + 1
    if count == 1:
        return [0]
    spacing = span / (count - 1)
    # round() rounds halves to even, like np.round in nnU-Net
    return [int(round(spacing * i)) for i in range(count)]


def tile_grid(image_shape: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """Tile starts per axis; the tiles are their Cartesian product."""
    if len(image_shape) != len(patch):
        raise ValueError(f"image {tuple(image_shape)} and patch {tuple(patch)} differ in rank")
    return [tile_starts(i, p, step) for i, p in zip(image_shape, patch)]


def tile_count(image_shape: Sequence[int], patch: Sequence[int], step: float) -> int:
    return math.prod(len(starts) for starts in tile_grid(image_shape, patch, step))



def mirror_axes(dims: int, mirror: bool | Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial axes (of a (1, C, *spatial) tensor) flipped in each test-time-augmented pass.

    With mirroring every subset of the spatial axes is flipped once, the empty one included:
    2^dims passes per tile (8 in 3D, 4 in 2D). Without, one pass. ``mirror`` may also name
    the spatial axes (0-based, as an nnU-Net checkpoint's allowed mirroring axes): every
    subset of those.
    """
    if not mirror:
        return [()]
    if mirror is True:
        axes: Sequence[int] = range(2, 2 + dims)
    else:
        axes = [2 + int(a) for a in mirror]  # type: ignore[union-attr]
        dims = len(axes)
    return [combo for r in range(dims + 1) for combo in itertools.combinations(axes, r)]



def target_shape(shape: Sequence[int], spacing: Sequence[float], target_mm: float
                 ) -> tuple[int, int, int]:
    """The grid at isotropic ``target_mm``: round(voxels * spacing / target), field of view kept."""
    if target_mm <= 0:
        raise ValueError(f"target spacing must be positive, got {target_mm}")
    return tuple(max(1, int(round(n * s / target_mm)))  # type: ignore[return-value]
                 for n, s in zip(shape, spacing))
