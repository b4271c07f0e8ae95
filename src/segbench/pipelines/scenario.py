"""The whole_ct scenario (``scenarios.WholeCT`` delegates to :class:`LoopScenario`): one timed
call runs a whole-CT pipeline on the CT, with the peak RSS of that loop; after timing, the
last loop's labels are scored (Dice against a phantom's truth, voxel agreement and Dice against
the labels the FP32 eager loop of the same network and CT saved) beside the per-pass estimate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from segbench import machine, quality
from segbench.catalogue import Pipeline
from segbench.pipelines.inputs import calibration_passes, example_pass
from segbench.pipelines.loop import Call, run
from segbench.pipelines.scan import CACHE_DIR, CT, load_ct, save_npy
from segbench.runtimes import REFERENCE

# --------------------------------------------------------------------------------------------
# The labels the others are compared with


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of voxels with the same label, in percent."""
    return float((a == b).mean() * 100)


def reference_path(key: str) -> Path:
    """Where an FP32 eager loop leaves its labels for the other runtimes of the same network
    and CT (the random-weight agreement column)."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return CACHE_DIR / f"reference-{digest}.npy"


def save_reference(key: str, labels: np.ndarray) -> None:
    save_npy(reference_path(key), labels)


def load_reference(key: str) -> np.ndarray | None:
    path = reference_path(key)
    return np.load(path) if path.exists() else None


# --------------------------------------------------------------------------------------------
# Peak memory of the loop


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux: ``5`` into /proc/self/clear_refs), so
    the peak read after a loop is the loop's own, not the export's or the model build's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class LoopLog:
    """What the last loop of a cell left behind for the evaluation after timing."""

    labels: np.ndarray | None = None
    stages: dict[str, float] = field(default_factory=dict)
    peak_rss: int | None = None
    peak_reset: bool = False
    loops: int = 0


class LoopScenario:
    """The whole_ct scenario's logic (``scenarios.WholeCT`` delegates here).

    ``cell.scenario``: {"kind": "whole_ct", "ct": load_ct source, "pipeline":
    Pipeline.to_dict(), "quality": "dice" | "agreement", "reference": key shared by the
    runtimes of one network and CT, "calibration": INT8 inputs, "estimate_passes": isolated
    passes timed after the loop}. One timed call runs the whole pipeline on the CT, after
    resetting the RSS high-water mark; the last loop's labels, stage times and peak RSS stay
    here for :meth:`evaluate`. With {"warmup": "pass"} the harness's first call (its warm-up,
    timed apart) is one network pass instead of a whole loop: for loops of several minutes,
    where the pass warms the same kernels and a second loop would not fit the run's budget.
    """

    def __init__(self) -> None:
        self._cts: dict[str, CT] = {}
        self._logs: dict[str, LoopLog] = {}
        self._examples: dict[str, torch.Tensor] = {}

    def ct(self, cell: Any) -> CT:
        import json

        key = json.dumps(cell.scenario["ct"], sort_keys=True)
        if key not in self._cts:
            self._cts = {key: load_ct(cell.scenario["ct"])}  # one CT per process at a time
        return self._cts[key]

    @staticmethod
    def pipeline(cell: Any) -> Any:
        """The cell's pipeline: the project's (:class:`Pipeline`) or a model folder's
        (kind "nnunet": :class:`segbench.pipelines.nnunet.NnunetPipeline`)."""
        data = cell.scenario["pipeline"]
        if data.get("kind") == "nnunet":
            from segbench.pipelines.nnunet import NnunetPipeline

            return NnunetPipeline.from_dict(data)
        return Pipeline.from_dict(data)

    @staticmethod
    def _nnunet(pipe: Any) -> Any:
        """The model-folder pipeline module for a kind "nnunet" pipeline, else None."""
        if pipe.kind != "nnunet":
            return None
        from segbench.pipelines import nnunet

        return nnunet

    def example(self, cell: Any) -> torch.Tensor:
        pipe = self.pipeline(cell)
        own = self._nnunet(pipe)
        x = (own.example_pass if own else example_pass)(self.ct(cell), pipe)
        self._examples[cell.key] = x
        return x

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        from segbench import runtimes

        if runtimes.get(cell.runtime).precision != "int8":
            return {}
        ct, pipe = self.ct(cell), self.pipeline(cell)
        count = int(cell.scenario.get("calibration", 8))
        own = self._nnunet(pipe)
        arrays = (own.calibration_passes(ct, pipe, count) if own else
                  calibration_passes(ct, pipe, count,
                                     phantom=cell.scenario["ct"]["kind"] == "phantom"))
        return {"calibration_inputs": arrays}

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Call], Callable[[], Any]]:
        from segbench.measure import StageClock

        ct, pipe = self.ct(cell), self.pipeline(cell)
        log = self._logs[cell.key] = LoopLog()
        own = self._nnunet(pipe)
        run_pipeline = own.run if own else run

        warm_pass = [cell.scenario.get("warmup") == "pass"]

        def loop(call: Call) -> Callable[[], Any]:
            def one() -> Any:
                if warm_pass[0]:  # first call = one network pass (see Protocol in the docs)
                    warm_pass[0] = False
                    return call(example)
                log.labels = None  # the previous loop's labels do not count in this peak
                stages = StageClock()
                log.peak_reset = reset_peak_rss()
                labels = run_pipeline(call, ct, pipe, stages)
                log.peak_rss = machine.peak_rss_bytes()
                log.stages, log.labels = dict(stages.seconds), labels
                log.loops += 1
                return labels

            return one

        return loop

    def evaluate(self, cell: Any, call: Call) -> dict[str, Any]:
        from segbench.measure import time_call

        ct, pipe, sc = self.ct(cell), self.pipeline(cell), cell.scenario
        log = self._logs.get(cell.key, LoopLog())
        out: dict[str, Any] = {
            "whole_ct": True, "ct_source": ct.source, "ct_shape": list(ct.shape),
            "ct_spacing": list(ct.spacing), "grid": list(pipe.grid(ct.shape, ct.spacing)),
            "passes": pipe.passes(ct.shape, ct.spacing), "stages_s": log.stages,
            "loop_peak_rss_bytes": log.peak_rss if log.peak_reset else None,
            "loops_run": log.loops, "pipeline": pipe.to_dict(),
            "warmup": ("one network pass" if sc.get("warmup") == "pass" else "one whole loop")}
        # the per-pass estimate of the same cell: isolated passes x the pass count
        example = self._examples.get(cell.key)
        k = int(sc.get("estimate_passes", 2))
        if example is not None and k > 0:
            times = sorted(time_call(lambda: call(example))[1] for _ in range(k))
            per_pass = times[len(times) // 2]
            out.update(seconds_per_pass=per_pass, estimate_s=per_pass * out["passes"])
        labels = log.labels
        if labels is None:
            return out
        if labels.shape != ct.shape:
            raise ValueError(f"pipeline returned labels of shape {labels.shape}, CT is {ct.shape}")
        if ct.truth is not None and sc.get("quality") == "dice":
            out["dice"] = quality.foreground_mean_dice(ct.truth, labels)
        ref_key = sc.get("reference")
        if ref_key:
            # the FP32 eager loop saves the labels the other runtimes of its reference key
            # are compared with; a search states it (its eager variants compare, not save)
            if sc.get("saves_reference", cell.runtime == REFERENCE):
                save_reference(ref_key, labels)
                out["agreement_vs_eager"] = 100.0
            else:
                ref = load_reference(ref_key)
                if ref is not None and ref.shape == labels.shape:
                    out["agreement_vs_eager"] = agreement(ref, labels)
                    # Dice needs no truth: the reference's labels are the truth here
                    if (ct.truth is not None and sc.get("quality") == "dice"
                            or sc.get("quality") == "dice_vs_reference"):
                        out["dice_vs_eager"] = quality.foreground_mean_dice(ref, labels)
        return out
