"""How much of a segmentation an output grid can keep at best, with no network involved.

A pipeline decides its labels on a grid of its own and brings them back to the CT's grid:

- ``2d-lowres``: the 2D champion's ``lowres`` path: argmax on the 1/4 in-plane logits, labels
  upsampled x4 by nearest neighbour (z untouched: 2D networks see every slice);
- ``3d-1.5mm``, ``3d-3mm``, ``3d-6mm``: TotalSegmentator's default, ``--fast`` and ``--fastest``
  resample the CT to isotropic 1.5, 3 or 6 mm, segment there, and bring the label map back by
  nearest neighbour (``pipelines.resample.labels_back_nearest``, the project's own 3D
  pipelines).

Bringing labels back by nearest neighbour gives every CT voxel the label of one grid voxel, so
the CT's voxels fall into groups (all voxels whose nearest grid voxel is the same, found with
the pipelines' own ``pipelines.resample.nearest_indices``) that always share a label. The best
any network on that grid can do is to give each group the label most of its voxels have in the
reference (ties go to the background): that majority map, compared with the reference, is the
grid's ceiling. Since the groups of each axis are runs of consecutive voxels, sums over groups
are separable ``np.add.reduceat`` along each axis, and a mask's ceiling can be computed on a
crop aligned to whole groups, which gives the same values as the whole volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segbench.pipelines.resample import nearest_indices
from segbench.tiling import target_shape


@dataclass(frozen=True)
class Grid:
    key: str
    display: str
    spacing_mm: float | None = None  # isotropic target spacing of a 3D pipeline
    in_plane_factor: int | None = None  # a 2D output at 1/factor in-plane

    def shape(self, shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, int, int]:
        """The grid's (z, y, x) shape for a CT of ``shape`` at ``spacing`` (z, y, x) mm."""
        if self.spacing_mm is not None:
            return target_shape(shape, spacing, self.spacing_mm)
        f = int(self.in_plane_factor or 1)
        return (int(shape[0]), max(1, int(shape[1]) // f), max(1, int(shape[2]) // f))


GRIDS = (
    Grid("2d-lowres", "2D lowres path (1/4 in-plane)", in_plane_factor=4),
    Grid("3d-1.5mm", "3D 1.5 mm (TotalSegmentator default)", spacing_mm=1.5),
    Grid("3d-3mm", "3D 3 mm (TotalSegmentator --fast)", spacing_mm=3.0),
    Grid("3d-6mm", "3D 6 mm (TotalSegmentator --fastest)", spacing_mm=6.0),
)
GRID_KEYS = tuple(g.key for g in GRIDS)


def grid(key: str) -> Grid:
    for g in GRIDS:
        if g.key == key:
            return g
    raise KeyError(f"unknown grid {key!r}; valid: {', '.join(GRID_KEYS)}")


def _groups(n_fine: int, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of each run of CT voxels that share one grid voxel along an axis."""
    idx = nearest_indices(n_grid, n_fine)  # grid voxel each CT voxel's label comes from
    _, starts, counts = np.unique(idx, return_index=True, return_counts=True)
    return starts, counts


def _group_sums(x: np.ndarray, groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    for axis, (starts, _) in enumerate(groups):
        x = np.add.reduceat(x, starts, axis=axis)
    return x


def _expand(x: np.ndarray, groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    for axis, (_, counts) in enumerate(groups):
        x = np.repeat(x, counts, axis=axis)
    return x


def best_labels(labels: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """The reference ``labels`` as the best label map decided on ``grid_shape`` and brought back
    by nearest neighbour: each group of CT voxels gets its majority label (ties: the lowest
    label value, i.e. the background)."""
    groups = [_groups(n, g) for n, g in zip(labels.shape, grid_shape)]
    values = np.unique(labels)
    counts = np.stack([_group_sums((labels == v).astype(np.int32), groups) for v in values])
    winner = values[counts.argmax(0)].astype(labels.dtype)
    return _expand(winner, groups)


def best_mask(mask: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """:func:`best_labels` of one binary mask, computed on a crop of whole groups around it."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    slices, crop_groups = [], []
    for axis, (n, g) in enumerate(zip(mask.shape, grid_shape)):
        starts, counts = _groups(n, g)
        ends = starts + counts
        other = tuple(i for i in range(mask.ndim) if i != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        first = int(np.searchsorted(ends, hit[0], side="right"))  # group holding hit[0]
        last = int(np.searchsorted(ends, hit[-1], side="right"))
        slices.append(slice(int(starts[first]), int(ends[last])))
        crop_groups.append((starts[first:last + 1] - starts[first], counts[first:last + 1]))
    crop = mask[tuple(slices)].astype(np.int32)
    sums = _group_sums(crop, crop_groups)
    sizes = _group_sums(np.ones(crop.shape, np.int32), crop_groups)
    out[tuple(slices)] = _expand(2 * sums > sizes, crop_groups)
    return out
