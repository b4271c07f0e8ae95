"""Runs one cell in the current process and writes its record. Started by isolate.py.

Stages are named so that a failure says where it happened ("prepare: ...", "first call: ...").
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from segbench import fidelity, fields, machine, scenarios
from segbench.cell import Cell
from segbench.measure import time_call
from segbench.results import Record, write_json_atomic
from segbench.scenarios import Forward

MEMORY_HEADROOM = 1.5  # runtimes keep copies (fused weights, arenas): estimate x this must fit


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def peak_rss_mb() -> float | None:
    peak = machine.peak_rss_bytes()
    return None if peak is None else peak / 2**20


def blank_record(cell: Cell) -> Record:
    return Record(benchmark=cell.benchmark, key=cell.key, model=cell.model.label,
                  family=cell.model.family, name=cell.model.name,
                  options=dict(cell.model.options), runtime=cell.runtime, shape=list(cell.shape),
                  batch=cell.batch, threads=cell.threads, classes=cell.model.classes,
                  quick=cell.protocol.quick, protocol=cell.protocol.to_dict(),
                  extra=dict(cell.extra), commit=machine.git_commit(),
                  packages=machine.package_versions(),
                  weights=_weights_label(cell),
                  date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def _weights_label(cell: Cell) -> str:
    if cell.model.family == "nnunet-folder":
        return "the model folder's checkpoint"
    recipe = cell.model.options.get("train")
    if not recipe:
        return "random"
    return "trained on phantoms (" + ", ".join(f"{k} {v}" for k, v in recipe.items()) + ")"


ESTIMATE_FILE_ENV = "SEGBENCH_ESTIMATE_FILE"  # isolate.py reads it if the cell gets killed
# An estimate builds a structure on the meta device and must never train, load or save weights.
# Families with ``build_untrained`` give their structure that way; these build nothing else:
META_SAFE_BUILD = ("encoder", "3d")
SAME_STRUCTURE = {"3d-phantom": "3d"}  # trained-weight variants estimated as their structure


def estimate_memory(cell: Cell) -> dict[str, int] | None:
    """Memory the cell needs, computed on the meta device (nothing allocated), or None if the
    model cannot be built there.

    The forward footprint of the cell's real input shape (batch and size included) of the
    network's structure: weights are never trained, loaded or settled for an estimate (they do
    not change the footprint). 2D networks are taken before branch fusion (``build_untrained``),
    an upper bound; a family that is neither safe to build on meta nor has ``build_untrained``
    is not estimated.
    A sliding-window scenario adds its input volume (float32) and its logit and weight
    accumulators over the padded volume; S parallel streams hold S copies of everything.
    """
    import torch

    from segbench.footprint import forward_memory
    from segbench.models import family, structure_options

    spec = cell.model
    key, options = spec.family, structure_options(spec)
    if key in SAME_STRUCTURE:
        key, options = SAME_STRUCTURE[key], {}
    try:
        fam = family(key)
        if hasattr(fam, "build_untrained"):
            build = fam.build_untrained
        elif key in META_SAFE_BUILD:
            build = fam.build
        else:
            return None
        with torch.device("meta"):
            model = build(spec.name, spec.classes, **options).eval()
            example = torch.empty(cell.shape)
        estimate = forward_memory(model, example)
    except Exception:  # noqa: BLE001 - a model that cannot go on meta simply is not guarded
        return None
    scenario = cell.scenario or {}
    if scenario.get("kind") == "sliding_window":
        volume = list(scenario["volume"])
        padded = [max(v, p) for v, p in zip(volume[1:], scenario["patch"])]
        voxels = 1
        for n in padded:
            voxels *= n
        width = 4 if scenario.get("accumulate", "float16") == "float32" else 2
        estimate["scenario_bytes"] = voxels * (volume[0] * 4 + (spec.classes + 1) * width)
    elif "scenario_bytes" in scenario:  # a plan that estimated its own buffers (own_model)
        estimate["scenario_bytes"] = int(scenario["scenario_bytes"])
    streams = int(cell.extra.get(fields.STREAMS, 1) or 1)
    if streams > 1:
        estimate["streams"] = streams
    return estimate


def memory_needed(estimate: dict[str, int]) -> int:
    """Bytes the guard asks for: the forward estimate with headroom, plus scenario buffers,
    times the parallel streams."""
    return int((estimate["forward_peak_bytes"] * MEMORY_HEADROOM
                + estimate.get("scenario_bytes", 0)) * estimate.get("streams", 1))


def _leave_estimate(need: int, have: int) -> None:
    """Write the estimate where isolate.py looks if the kernel kills the cell later."""
    import os

    path = os.environ.get(ESTIMATE_FILE_ENV)
    if path:
        Path(path).write_text(json.dumps({"estimate_bytes": need, "available_bytes": have}))


def run_cell(cell: Cell) -> Record:
    import torch

    from segbench import runtimes
    from segbench.footprint import count_params, profile_forward
    from segbench.models import build_model, describe_model

    record = blank_record(cell)
    torch.set_num_threads(cell.threads)
    runtime = runtimes.get(cell.runtime)
    record.extra[fields.PRECISION] = runtime.precision
    reason = runtime.unavailable_reason() or cell.extra.get(fields.BUDGET_REFUSED)
    if reason:  # a runtime this machine lacks, or a pipeline over the user's memory budget
        record.status, record.reason = "skipped", reason
        return record

    # Memory guard, for every cell: estimate on the
    # meta device, skip before any allocation if it cannot fit, and leave the estimate for
    # isolate.py to quote should the kernel kill the cell anyway.
    from segbench.footprint import gib, memory_budget_bytes

    estimate = estimate_memory(cell)
    try:
        have = memory_budget_bytes()
    except ValueError as exc:
        record.status, record.reason = "failed", f"memory budget: {exc}"
        return record
    if estimate:
        need = memory_needed(estimate)
        record.memory.update(estimate)
        record.memory.update({"estimate_bytes": need, "available_bytes": have})
        _leave_estimate(need, have)
        if have and need > have:
            record.status = "skipped"
            extra = " + scenario buffers" if "scenario_bytes" in estimate else ""
            record.reason = (f"does not fit: estimate {gib(need)} (forward pass x"
                             f"{MEMORY_HEADROOM}{extra}), available {gib(have)}")
            return record

    stage = "build"
    try:
        model = build_model(cell.model)
        record.params = count_params(model)
        record.extra.update(describe_model(cell.model))
        scenario = scenarios.get(cell)
        example = scenario.example(cell)

        stage = "reference"
        reference = None
        flops, memory = profile_forward(model, example)
        record.gflops = flops / 1e9
        record.memory.update(memory)
        if cell.fidelity and cell.runtime != runtimes.REFERENCE:
            with torch.inference_mode():
                reference = runtimes.to_numpy(model(example))

        stage = "runtime"
        measured, output = _prepare_and_measure(model, example, cell, scenario,
                                                want_output=reference is not None)
        record.prepare_s = measured["prepare_s"]
        record.runtime_info = measured["info"]
        record.timing = measured["timing"]
        record.extra.update(measured["evaluation"])
        if reference is not None:
            stage = "fidelity"
            record.fidelity = fidelity.compare(reference, output)
            with torch.inference_mode():
                record.extra.update(scenario.reference_evaluation(cell, model))

        for name in cell.submodules:
            stage = f"submodule {name}"
            measured, _ = _prepare_and_measure(getattr(model, name), example, cell,
                                               scenarios.Forward(), want_output=False)
            record.submodules[name] = {"prepare_s": measured["prepare_s"], **measured["timing"]}
    except Exception as exc:  # noqa: BLE001 - any failure becomes a row, never a crash
        record.status = "failed"
        record.reason = f"{stage}: {_one_line(exc)}"
        traceback.print_exc(file=sys.stderr)
    record.memory["peak_rss_mb"] = peak_rss_mb()
    return record


def _prepare_and_measure(module: Any, example: Any, cell: Cell, scenario: Forward,
                         want_output: bool) -> tuple[dict[str, Any], Any]:
    """Prepare ``module`` with the cell's runtime (timed apart), time the scenario's workload
    by the protocol, then let the scenario evaluate the prepared model.

    Returns prepare time, runtime info, timing and evaluation, and the output on the cell's
    input (for fidelity) when asked.
    """
    from segbench import runtimes
    from segbench.measure import measure

    runtime = runtimes.get(cell.runtime)
    options = {**cell.runtime_options,
               **runtimes.accepted(cell.runtime, scenario.runtime_options(cell))}
    if cell.extra.get(fields.STREAMS, 1) > 1:  # throughput mode: S instances timed at once
        from segbench import streams

        return streams.prepare_and_measure(runtime, module, example, cell.threads,
                                           cell.extra[fields.STREAMS], options, cell.protocol,
                                           cell.batch, want_output)
    prepared, prepare_s = time_call(
        lambda: runtime.prepare(module, example, cell.threads, **options))
    try:
        timed = scenario.workload(cell, example)(prepared.call)
        timing = measure(timed, cell.protocol, batch=cell.batch)
        output = runtimes.to_numpy(prepared.call(example)) if want_output else None
        evaluation = scenario.evaluate(cell, prepared.call)
    finally:
        if prepared.cleanup:
            prepared.cleanup()
    return {"prepare_s": prepare_s, "info": prepared.info, "timing": timing.to_dict(),
            "evaluation": evaluation}, output


def main(argv: list[str]) -> int:
    cell_path, out_path = Path(argv[0]), Path(argv[1])
    cell = Cell.from_dict(json.loads(cell_path.read_text()))
    record, elapsed = time_call(lambda: run_cell(cell))
    record.elapsed_s = elapsed
    write_json_atomic(out_path, record.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
