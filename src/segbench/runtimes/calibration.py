"""Calibration inputs for post-training INT8 quantisation, shared by every INT8 runtime.

One helper rather than one per backend so that ORT INT8 and OpenVINO INT8 rows of a table are
calibrated on exactly the same tensors: a fidelity gap between them is then the runtime's, not
the calibration data's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

DEFAULT_COUNT = 32
# Not the evaluation input's seed (segbench.models.INPUT_SEED): calibrating on the very tensor
# whose fidelity is reported would flatter INT8.
CALIBRATION_SEED = 8128

CalibrationInput = np.ndarray | torch.Tensor


def calibration_inputs(example: torch.Tensor, count: int | None = None,
                       inputs: Sequence[CalibrationInput] | None = None,
                       seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """The float32 arrays a quantiser calibrates on.

    Explicit ``inputs`` win (a benchmark calibrating on training slices passes them); ``count``
    then keeps only the first ``count`` of them, so a quick run can shrink any calibration.
    Without ``inputs``, ``count`` (default 32) random normal tensors of the example's shape are
    drawn from their own seeded generator, the same distribution the evaluation input has.
    Every array must have the example's exact shape: exported graphs have static shapes.
    """
    if count is not None and count < 1:
        raise ValueError(f"calibration needs at least one input, got calibration={count}")
    if inputs is not None:
        arrays = [_as_float32(a) for a in inputs][:count]
        if not arrays:
            raise ValueError("calibration_inputs is empty")
        _check_shapes(arrays, tuple(example.shape))
        return arrays
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(tuple(example.shape), generator=gen).numpy()
            for _ in range(count or DEFAULT_COUNT)]


def describe(arrays: Sequence[np.ndarray], explicit: bool, seed: int = CALIBRATION_SEED
             ) -> dict[str, Any]:
    """What a record says about calibration, so two INT8 rows can be compared fairly."""
    return {"calibration": len(arrays),
            "calibration_source": "explicit inputs" if explicit else f"random normal, seed {seed}"}


def _as_float32(value: CalibrationInput) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def _check_shapes(arrays: list[np.ndarray], shape: tuple[int, ...]) -> None:
    for i, array in enumerate(arrays):
        if array.shape != shape:
            raise ValueError(f"calibration input {i} has shape {array.shape}, the model takes "
                             f"{shape}")
