"""How far a runtime's output is from PyTorch FP32 eager on the same input.

Four numbers, each answering a different question:
- max abs error: the worst single logit;
- SQNR (dB): signal power over error power, the usual quantisation yardstick (higher is better,
  ~40 dB and up is visually identical, 20 dB is a coarse copy);
- label agreement (%): the share of voxels whose argmax label is unchanged, what a user sees;
- mean Dice over the labels present in the reference: agreement that small structures do not
  drown in the background.
On random weights logits are nearly tied, so label agreement understates real-world fidelity;
records say which weights were used.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from segbench import quality

AGREEMENT_THRESHOLD = 99.0  # % below which a row is marked in tables
DICE_TOLERANCE = 0.01  # a runtime "keeps" a trained network's quality within this Dice of FP32
# Below this Dice against the truth a network is too little trained for its Dice to judge a
# runtime's or a method's quality (a network at 0.04 stays "within 0.01" whatever is done to it)
TRAINED_DICE_FLOOR = 0.5


def _flat(arrays: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(arrays, np.ndarray):
        return arrays.astype(np.float64).ravel()
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def max_abs_error(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.max(np.abs(_flat(ref) - _flat(out)))) if _flat(ref).size else 0.0


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - out|^2); +inf for identical outputs."""
    r, o = _flat(ref), _flat(out)
    noise = float(np.sum((r - o) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def compare(ref: np.ndarray | Sequence[np.ndarray], out: np.ndarray | Sequence[np.ndarray]
            ) -> dict[str, Any]:
    """All fidelity numbers for one output against its reference.

    Label metrics are computed only for a single segmentation output (N, C, ...) with C > 1;
    for feature maps (encoder-only) they are None.
    """
    if not isinstance(ref, np.ndarray) or not isinstance(out, np.ndarray):
        if len(ref) != len(out):
            raise ValueError(f"output count differs: {len(ref)} vs {len(out)}")
    elif ref.shape != out.shape:
        raise ValueError(f"output shape differs: {ref.shape} vs {out.shape}")
    result: dict[str, Any] = {"max_abs": max_abs_error(ref, out), "sqnr_db": sqnr_db(ref, out),
                              "label_agreement": None, "mean_dice": None}
    if isinstance(ref, np.ndarray) and ref.ndim >= 3 and ref.shape[1] > 1:
        ref_labels = ref.argmax(axis=1)
        out_labels = np.asarray(out).argmax(axis=1)
        result["label_agreement"] = 100.0 * float(np.mean(ref_labels == out_labels))
        result["mean_dice"] = quality.mean_dice_with_background(ref_labels, out_labels)
    return result


def below_threshold(fid: dict[str, Any] | None, threshold: float = AGREEMENT_THRESHOLD) -> bool:
    agreement = (fid or {}).get("label_agreement")
    return agreement is not None and agreement < threshold
