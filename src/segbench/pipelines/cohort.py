"""A cohort of CTs through one pipeline: the network loaded once, and (``overlap``) the next CT
read and preprocessed in a background thread while the network runs on the current one.

TotalSegmentator and nnU-Net users with hundreds of scans run the tool once per file, which
loads the weights and starts the interpreter for every CT; nnU-Net's own folder mode overlaps
preprocessing in worker processes. Here one timed call segments the whole cohort; the time of
each CT is the wall time from the previous CT's labels to its own (the first from the start),
so the per-CT seconds add up to the cohort's and a CT whose input was prepared during the
previous one's network counts only what it still waited for. On 2 cores the reader competes
with the network for the same cores: what overlap buys is measured, not assumed.

Scenario ``{"kind": "cohort", "files": [...], "pipeline": NnunetPipeline.to_dict(),
"overlap": bool, "calibration": n}``. No clock here: per-CT seconds come from a
``measure.StageClock`` with one stage per CT.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from segbench import machine
from segbench.pipelines.nnunet import NnunetPipeline, calibration_passes, example_pass, infer
from segbench.pipelines.nnunet import preprocess as nnunet_preprocess
from segbench.pipelines.scan import read_nifti

Prepared = tuple[Any, np.ndarray, dict[str, Any]]  # (CT, preprocessed data, properties)


def prepare(path: str, pipe: NnunetPipeline) -> Prepared:
    """Read one CT and preprocess it (the part that can run beside the network)."""
    ct = read_nifti(path)
    data, props = nnunet_preprocess(ct, pipe)
    return ct, data, props


def inputs(files: Sequence[str], load: Callable[[str], Prepared], overlap: bool
           ) -> Iterator[Prepared]:
    """The prepared CTs in order; with ``overlap`` the next one is prepared in a thread while
    the caller works on the current one (one ahead: two CTs in memory at most)."""
    if not overlap:
        for path in files:
            yield load(path)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segbench-reader") as pool:
        pending = pool.submit(load, files[0])
        for i in range(len(files)):
            current = pending.result()
            if i + 1 < len(files):
                pending = pool.submit(load, files[i + 1])
            yield current


def segment_cohort(call: Any, files: Sequence[str], pipe: NnunetPipeline, overlap: bool,
                   stages: Any, load: Callable[[str], Prepared] | None = None
                   ) -> list[tuple[int, ...]]:
    """Segment every CT; one stage per CT in ``stages`` ("ct 1", "ct 2", ...). Returns the
    label shapes (the labels themselves are dropped: a cohort's are not kept in memory)."""
    load = load or (lambda path: prepare(path, pipe))
    shapes: list[tuple[int, ...]] = []
    feed = inputs(files, load, overlap)
    for i in range(len(files)):
        with stages.stage(f"ct {i + 1}"):
            ct, data, props = next(feed)
            labels = infer(call, data, props, pipe, _NoStages())
            if labels.shape != ct.shape:
                raise ValueError(f"{files[i]}: labels {labels.shape}, CT {ct.shape}")
        shapes.append(tuple(labels.shape))
        del ct, data, props, labels
    return shapes


class _NoStages:
    @staticmethod
    def stage(name: str) -> Any:
        import contextlib

        return contextlib.nullcontext()


class CohortScenario:
    """The cohort scenario (``scenarios.Cohort`` delegates here)."""

    def __init__(self) -> None:
        self._logs: dict[str, dict[str, Any]] = {}
        self._first: dict[str, Any] = {}

    @staticmethod
    def pipeline(cell: Any) -> NnunetPipeline:
        return NnunetPipeline.from_dict(cell.scenario["pipeline"])

    def first_ct(self, cell: Any) -> Any:
        path = cell.scenario["files"][0]
        if path not in self._first:
            self._first = {path: read_nifti(path)}
        return self._first[path]

    def example(self, cell: Any) -> torch.Tensor:
        return example_pass(self.first_ct(cell), self.pipeline(cell))

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        from segbench import runtimes

        if runtimes.get(cell.runtime).precision != "int8":
            return {}
        return {"calibration_inputs": calibration_passes(
            self.first_ct(cell), self.pipeline(cell), int(cell.scenario.get("calibration", 8)))}

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Any], Callable[[], Any]]:
        from segbench.measure import StageClock
        from segbench.pipelines.scenario import reset_peak_rss

        files, pipe = list(cell.scenario["files"]), self.pipeline(cell)
        overlap = bool(cell.scenario.get("overlap"))
        log = self._logs[cell.key] = {}
        warm = [True]

        def loop(call: Any) -> Callable[[], Any]:
            def one() -> Any:
                if warm[0]:  # the harness's warm-up: one network pass, not a whole cohort
                    warm[0] = False
                    return call(example)
                self._first = {}  # the cohort reads its CTs itself
                stages = StageClock()
                reset = reset_peak_rss()
                shapes = segment_cohort(call, files, pipe, overlap, stages)
                log.update(per_ct_s=[stages.seconds[f"ct {i + 1}"] for i in range(len(files))],
                           shapes=[list(s) for s in shapes],
                           peak_rss=machine.peak_rss_bytes() if reset else None)
                return shapes

            return one

        return loop

    def evaluate(self, cell: Any, call: Any) -> dict[str, Any]:
        log = self._logs.get(cell.key, {})
        per_ct = log.get("per_ct_s")
        if not per_ct:
            return {}
        total = float(sum(per_ct))
        return {"cohort": True, "cts": len(per_ct), "per_ct_s": per_ct,
                "median_ct_s": float(np.median(per_ct)),
                "p90_ct_s": float(np.percentile(per_ct, 90)),
                "cohort_s": total, "cts_per_hour": 3600.0 * len(per_ct) / total,
                "loop_peak_rss_bytes": log.get("peak_rss"),
                "ct_shapes": log.get("shapes"), "pipeline": cell.scenario["pipeline"]}
