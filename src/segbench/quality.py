"""Quality of a label map against a reference, per organ: Dice and normalized surface Dice (NSD).

Both come from MONAI (``monai.metrics.compute_dice`` and ``compute_surface_dice``), the field's
maintained implementation; NSD uses MONAI's sub-voxel surface elements (``use_subvoxels``), the
definition of Nikolov et al. (2018) and DeepMind's ``surface-distance``: the share of both
surfaces that lies within ``tolerance_mm`` of the other surface, with the voxel spacing taken
into account.

Each organ is scored on a crop of the volume around both masks (a margin of two voxels keeps
every surface voxel and its neighbourhood inside): surface distances only run between surface
voxels, so the crop changes no value and keeps a 512x512 CT's small organs cheap.

An organ is scored only where the reference has it (an organ that was not contoured is not
known to be absent). A prediction that misses a present organ scores Dice 0 and NSD 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_TOLERANCE_MM = 2.0
CROP_MARGIN = 2  # voxels of background kept around both masks


# --------------------------------------------------------------------------------------------
# Dice of label maps on phantoms and between runtimes (numpy, no MONAI): each function says in
# its name what it averages and what it returns when there is nothing to average.


def dice_per_label(reference: np.ndarray, prediction: np.ndarray) -> dict[int, float]:
    """Dice of every label present in the reference, background (0) included; a label absent
    from both scores 1.0 (it cannot happen for a label taken from the reference)."""
    scores = {}
    for label in np.unique(reference):
        a = reference == label
        b = prediction == label
        denom = int(a.sum()) + int(b.sum())
        scores[int(label)] = 2.0 * int(np.logical_and(a, b).sum()) / denom if denom else 1.0
    return scores


def organ_dice(reference: np.ndarray, prediction: np.ndarray) -> dict[int, float]:
    """Dice of every organ (label > 0) present in the reference. The background is left out: it
    is most of every image and would lift a mean towards 1 whatever happens to the organs."""
    return {k: v for k, v in dice_per_label(reference, prediction).items() if k != 0}


def mean_dice_with_background(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Mean of :func:`dice_per_label` (background counted as a label); 1.0 for an empty
    reference. Compares two runtimes' label maps of one slice (fidelity's agreement score)."""
    scores = dice_per_label(reference, prediction)
    return float(np.mean(list(scores.values()))) if scores else 1.0


def confusion(truth: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) voxel counts, truth along rows (one bincount over the volume);
    predicted labels beyond ``classes - 1`` count as the last class."""
    t = truth.astype(np.int64).ravel()
    p = np.minimum(pred.astype(np.int64).ravel(), classes - 1)
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def foreground_mean_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean Dice over the organs (labels > 0) present in the truth, each pooled over the whole
    volume; organs absent from the truth are left out, and NaN when it has none (the whole-CT
    pipelines' quality, against the phantom truth or the FP32 loop's labels)."""
    classes = int(max(truth.max(), pred.max())) + 1
    m = confusion(truth, pred, classes)
    overlap = np.diag(m)
    sizes = m.sum(1) + m.sum(0)
    present = [k for k in range(1, classes) if m[k].sum() > 0]
    if not present:
        return math.nan
    return float(np.mean([2 * overlap[k] / sizes[k] for k in present]))


def _crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = a | b
    slices = []
    for axis in range(both.ndim):
        other = tuple(i for i in range(both.ndim) if i != axis)
        hit = np.flatnonzero(both.any(axis=other))
        lo = max(0, int(hit[0]) - CROP_MARGIN)
        hi = min(both.shape[axis], int(hit[-1]) + 1 + CROP_MARGIN)
        slices.append(slice(lo, hi))
    a, b = a[tuple(slices)], b[tuple(slices)]
    pad = [(CROP_MARGIN, CROP_MARGIN)] * a.ndim  # a mask touching the volume's edge
    return np.pad(a, pad), np.pad(b, pad)


def organ_scores(reference: np.ndarray, prediction: np.ndarray,
                 spacing: Sequence[float], tolerance_mm: float = DEFAULT_TOLERANCE_MM
                 ) -> tuple[float, float] | None:
    """(Dice, NSD) of two binary masks of one organ; None when the reference is empty."""
    import torch
    from monai.metrics import compute_dice, compute_surface_dice

    ref, pred = np.asarray(reference, bool), np.asarray(prediction, bool)
    if ref.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {ref.shape} and {pred.shape}")
    if not ref.any():
        return None
    if not pred.any():
        return 0.0, 0.0
    ref, pred = _crop(ref, pred)
    y = torch.from_numpy(ref)[None, None].float()
    y_pred = torch.from_numpy(pred)[None, None].float()
    dice = float(compute_dice(y_pred, y, include_background=True)[0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's deprecation notes on unused arguments
        nsd = float(compute_surface_dice(
            y_pred, y, [float(tolerance_mm)], include_background=True,
            spacing=[float(s) for s in spacing], use_subvoxels=True)[0, 0])
    return dice, nsd


def per_organ(reference: np.ndarray, prediction: np.ndarray, organs: Mapping[int, str],
              spacing: Sequence[float], tolerance_mm: float = DEFAULT_TOLERANCE_MM
              ) -> dict[str, dict[str, float]]:
    """{organ: {"dice", "nsd"}} of two label maps, for the organs present in ``reference``."""
    out = {}
    for value, name in organs.items():
        scores = organ_scores(reference == value, prediction == value, spacing, tolerance_mm)
        if scores is not None:
            out[name] = {"dice": scores[0], "nsd": scores[1]}
    return out


def foreground_mean(scores: Mapping[str, Mapping[str, float]], metric: str) -> float:
    """Mean of one metric over the scored organs (NaN when none was scored)."""
    values = [s[metric] for s in scores.values() if s.get(metric) is not None]
    return float(np.mean(values)) if values else math.nan
