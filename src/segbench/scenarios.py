"""What a cell does around the model, beyond one forward pass on a random input.

A scenario may replace the input (a phantom slice instead of noise), wrap the timed call (a
whole sliding-window loop), hand the runtime extra preparation data (INT8 calibration images),
and evaluate the prepared model after timing (Dice against ground truth). The worker calls
these hooks and knows nothing of the scenarios themselves; a cell names its scenario with
``cell.scenario = {"kind": ..., ...}`` (no scenario = one forward pass).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

Call = Callable[[torch.Tensor], Any]


class Forward:
    """The default: one forward pass on the cell's fixed random input."""

    def example(self, cell: Any) -> torch.Tensor:
        from segbench.models import make_input

        return make_input(cell.shape)

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        return {}

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Call], Callable[[], Any]]:
        return lambda call: (lambda: call(example))

    def evaluate(self, cell: Any, call: Call) -> dict[str, Any]:
        return {}

    def reference_evaluation(self, cell: Any, call: Call) -> dict[str, Any]:
        """What :meth:`evaluate` measures, on FP32 eager (``call``), for a row that is not the
        reference: the same score without a second row to look it up in. Empty by default."""
        return {}


class SlidingWindow(Forward):
    """nnU-Net's whole tiled loop over a volume; one timed call = one volume."""

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Call], Callable[[], Any]]:
        from segbench.models import make_input
        from segbench.volume import sliding_window_predict

        sc = cell.scenario
        volume = make_input(tuple(sc["volume"]), seed=99)  # made before any clock
        return lambda call: (lambda: sliding_window_predict(
            call, volume, sc["patch"], sc["step"], cell.model.classes,
            mirror=sc.get("mirror", False)))


def _organs(cell: Any) -> int:
    """The organs of the phantoms the cell's network was trained on (its training recipe), or
    that the scenario names (a random-weight network fed the same slices as a trained one)."""
    from segbench.train import data_organs

    recipe = cell.model.options.get("train") or {}
    organs = (cell.scenario or {}).get("organs", recipe.get("organs"))
    return data_organs(cell.model.classes, organs)


class PhantomInput(Forward):
    """A network with trained weights fed CT phantoms: the fixed input is a held-out phantom
    slice (not noise), and INT8 calibration uses the calibration split (the training
    distribution, never the evaluation set). For outputs that are not a segmentation (an
    encoder's feature maps): nothing is scored beyond the fidelity against FP32."""

    def _data(self, cell: Any, split: str, count: int):
        from segbench.data import PhantomDataset

        return PhantomDataset(split, cell.shape[-1], count, organs=_organs(cell))

    def example(self, cell: Any) -> torch.Tensor:
        images, _ = self._data(cell, "eval", cell.batch).batch(0, cell.batch)
        return torch.from_numpy(images)

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        """``calibration_inputs`` for an INT8 runtime, if the scenario asks for calibration."""
        if "calibration" not in cell.scenario:
            return {}
        n = cell.scenario["calibration"]
        data = self._data(cell, "calibration", n * cell.batch)
        inputs = [data.batch(i * cell.batch, cell.batch)[0] for i in range(n)]
        return {"calibration_inputs": [np.ascontiguousarray(x) for x in inputs]}


class PhantomDice(PhantomInput):
    """A trained 2D segmentation network on CT phantoms: after timing, the prepared runtime is
    scored by Dice against ground truth on held-out phantoms, and so is FP32 eager
    (:meth:`reference_evaluation`), so every row carries its own Dice drop."""

    def evaluate(self, cell: Any, call: Call) -> dict[str, Any]:
        from segbench.train import evaluate

        result = evaluate(call, n=cell.scenario.get("n", 32), size=cell.shape[-1],
                          classes=cell.model.classes, batch=cell.batch, organs=_organs(cell))
        return {"dice": result["mean_dice"],
                "dice_per_organ": {str(k): v for k, v in result["dice"].items()},
                "eval_slices": result["n"]}

    def reference_evaluation(self, cell: Any, call: Call) -> dict[str, Any]:
        return {"dice_fp32": self.evaluate(cell, call)["dice"]}


class WholeCT(Forward):
    """A whole CT through a complete pipeline (HU volume in, uint8 label volume out); one timed
    call = one CT. The pipelines live in ``segbench.pipelines``, this scenario's logic in
    ``segbench.pipelines.scenario``."""

    def __init__(self) -> None:
        self._impl: Any = None

    def _loop(self) -> Any:
        if self._impl is None:
            from segbench.pipelines.scenario import LoopScenario

            self._impl = LoopScenario()
        return self._impl

    def example(self, cell: Any) -> torch.Tensor:
        return self._loop().example(cell)

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        return self._loop().runtime_options(cell)

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Call], Callable[[], Any]]:
        return self._loop().workload(cell, example)

    def evaluate(self, cell: Any, call: Call) -> dict[str, Any]:
        return self._loop().evaluate(cell, call)


class Cohort(WholeCT):
    """A folder of CTs through one pipeline, network loaded once; one timed call = the whole
    cohort (``segbench.pipelines.cohort``)."""

    def _loop(self) -> Any:
        if self._impl is None:
            from segbench.pipelines.cohort import CohortScenario

            self._impl = CohortScenario()
        return self._impl


SCENARIOS: dict[str, Forward] = {"forward": Forward(), "sliding_window": SlidingWindow(),
                                 "phantom_input": PhantomInput(), "phantom_dice": PhantomDice(),
                                 "whole_ct": WholeCT(), "cohort": Cohort()}


def get(cell: Any) -> Forward:
    kind = (cell.scenario or {}).get("kind", "forward")
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; valid: {', '.join(SCENARIOS)}")
    return SCENARIOS[kind]
