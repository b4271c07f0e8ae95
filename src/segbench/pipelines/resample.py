"""Around a 3D network in a whole-CT pipeline: nnU-Net's CT normalisation, the image resampled
to the network's isotropic grid (cubic spline, as TotalSegmentator does), and the way back to
the CT's grid: the label map by nearest neighbour, or the logits resampled linearly with a
running argmax over class chunks; the argmax of a float16 accumulator in float32 slabs.
Axis order is (z, y, x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class CTNormalisation:
    """nnU-Net's CTNormalization: clip to the training set's foreground 0.5 / 99.5 percentiles,
    subtract its mean, divide by its std. These are fixed numbers of the data set, not of the
    image. The values here are stand-ins of a typical CT data set (the phantom-trained network
    learns with the same ones); the cost is the same whatever they are."""

    lower: float = -1000.0
    upper: float = 1500.0
    mean: float = 80.0
    std: float = 400.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = np.clip(x, self.lower, self.upper)
        out -= self.mean
        out /= self.std
        return out.astype(np.float32, copy=False)


CT_NORMALISATION = CTNormalisation()


def resample_image(hu: np.ndarray, shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Cubic-spline resampling of the image to ``shape`` (TotalSegmentator resamples the CT with
    order 3 before nnU-Net sees it). Voxel centres are aligned as areas (grid mode)."""
    from scipy import ndimage

    if tuple(shape) == tuple(hu.shape):
        return hu.astype(np.float32, copy=True)
    factors = [t / s for t, s in zip(shape, hu.shape)]
    out = ndimage.zoom(hu, factors, order=order, mode="nearest", grid_mode=True,
                       prefilter=order > 1)
    if tuple(out.shape) != tuple(shape):  # zoom's own rounding can differ by one voxel
        out = out[tuple(slice(0, s) for s in shape)]
        out = np.pad(out, [(0, t - s) for t, s in zip(shape, out.shape)], mode="edge")
    return out.astype(np.float32, copy=False)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of every output voxel when ``n_in`` voxels are resized to ``n_out``,
    centres aligned (the voxel whose area contains the output voxel's centre)."""
    idx = np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def labels_back_nearest(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A label map resized to ``shape`` by nearest neighbour (cheap: one gather)."""
    iz, iy, ix = (nearest_indices(i, o) for i, o in zip(labels.shape, shape))
    return labels[np.ix_(iz, iy, ix)]


def labels_back_probabilities(logits: torch.Tensor, shape: Sequence[int], chunk: int = 4
                              ) -> np.ndarray:
    """Argmax of the logits resampled (trilinear) to ``shape``, ``chunk`` classes at a time.

    nnU-Net resamples all class maps to the original grid, then takes softmax and argmax; the
    argmax of resampled logits is the same as of resampled probabilities' softmax, and a
    running maximum over class chunks gives it without 118 full-resolution maps at once.
    """
    best = torch.full(tuple(shape), -math.inf, dtype=torch.float32)
    labels = torch.zeros(tuple(shape), dtype=torch.uint8)
    for first in range(0, logits.shape[0], chunk):
        part = logits[first:first + chunk].float()[None]
        up = F.interpolate(part, size=tuple(shape), mode="trilinear", align_corners=False)[0]
        value, index = up.max(dim=0)
        better = value > best
        best = torch.where(better, value, best)
        labels = torch.where(better, (index + first).to(torch.uint8), labels)
    return labels.numpy()


def argmax_labels(logits: torch.Tensor) -> np.ndarray:
    """(classes, ...) logits -> uint8 labels (float16 is read in float32 slabs along z, so the
    argmax never holds a float32 copy of the whole accumulator)."""
    out = np.empty(tuple(logits.shape[1:]), dtype=np.uint8)
    step = max(1, 8_000_000 // max(1, math.prod(logits.shape[2:]) * logits.shape[0]))
    for z in range(0, logits.shape[1], step):
        out[z:z + step] = logits[:, z:z + step].float().argmax(0).to(torch.uint8).numpy()
    return out

