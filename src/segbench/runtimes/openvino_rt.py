"""OpenVINO on the CPU plugin: FP32, BF16, and INT8 by NNCF post-training quantisation.

The model comes in through the same ONNX export as ONNX Runtime's (``Core.read_model``), so both
backends run one graph and a difference between their rows is the runtime's. Reading ONNX also
keeps OpenVINO's Python conversion tool (and its telemetry) out of the way.

The inference precision is always set explicitly: the CPU plugin silently runs BF16 wherever
the CPU supports it, which would turn an "FP32" row into a BF16 one on exactly the machines
where the difference matters. The compiled model's own properties and the precision each layer
actually runs in are read back into the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import nn

# importing segbench (this package's parent) has already blocked telemetry
from segbench import TELEMETRY_BLOCKED, machine
from segbench.runtimes import Prepared
from segbench.runtimes import calibration as calib
from segbench.runtimes.export import (
    DEFAULT_EXPORTER,
    export_onnx,
    given_onnx,
    remove_dir,
    scratch_dir,
    stage,
)

DEVICE = "CPU"
PRESETS = ("performance", "mixed")
DEFAULT_PRESET = "performance"
FLOAT_PRECISIONS = frozenset({"f32", "bf16", "f16"})
# Layers of the executed graph that are plumbing, not computation
PLUMBING_LAYERS = frozenset({"Input", "Output", "Const", "Reorder", "Reshape", "Transpose",
                             "Concatenation", "Split", "Gather", "StridedSlice"})
# Properties read back from the compiled model into the record
READBACK = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS",
            "PERFORMANCE_HINT", "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING",
            "ENABLE_HYPER_THREADING")


def compile_config(precision_hint: str, threads: int, cpu_pinning: bool = True,
                   streams: int = 1) -> dict[str, Any]:
    """The protocol's rules: ``threads`` inference threads in one stream, latency mode; with
    ``streams`` > 1 the same threads shared out over that many streams (throughput mode: that
    many requests run at once, ``threads / streams`` threads each).

    Pinning stays on for one compiled model (OpenVINO's default on Linux). Several compiled
    models running side by side (parallel streams) must not pin: each would pin its threads to
    the same first cores and they would take turns instead of running at once.
    """
    if streams < 1 or streams > threads:
        raise ValueError(f"streams must be between 1 and the threads ({threads}), got {streams}")
    return {"INFERENCE_PRECISION_HINT": precision_hint, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": streams, "ENABLE_CPU_PINNING": cpu_pinning}


KEEP_FLOAT = ("first", "last", "first-last")


def float_convolutions(model: ov.Model, keep: str) -> list[str]:
    """The friendly names of the convolutions ``keep`` names ("first", "last" or "first-last"
    in the graph's order): the layers an INT8 model leaves in float."""
    if keep not in KEEP_FLOAT:
        raise ValueError(f"keep_float must be one of {', '.join(KEEP_FLOAT)}, got {keep!r}")
    convs = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")]
    if not convs:
        return []
    picked = ([convs[0]] if keep in ("first", "first-last") else []) + (
        [convs[-1]] if keep in ("last", "first-last") else [])
    return list(dict.fromkeys(picked))


def _readable(value: Any) -> Any:
    """Property values as JSON-friendly scalars (element types become 'f32' / 'bf16')."""
    if isinstance(value, ov.Type):
        return value.get_type_name()
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value).split(".")[-1]


def compiled_properties(compiled: ov.CompiledModel) -> dict[str, Any]:
    out = {}
    for name in READBACK:
        try:
            out[name] = _readable(compiled.get_property(name))
        except RuntimeError:  # a property this OpenVINO version does not report
            continue
    return out


def layer_precisions(compiled: ov.CompiledModel, list_float: bool) -> dict[str, Any]:
    """How many computing layers of the executed graph run in each precision and, when
    ``list_float``, which layer types run in float: what BF16 or INT8 really covered, beyond
    what was asked for."""
    by_precision: Counter[str] = Counter()
    float_types: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        precision = info["runtimePrecision"].astype(str)
        if layer in PLUMBING_LAYERS:
            continue
        by_precision[precision] += 1
        if precision in FLOAT_PRECISIONS:
            float_types[f"{layer} ({precision})"] += 1
    out: dict[str, Any] = {"by_precision": dict(sorted(by_precision.items()))}
    if list_float:
        out["float_layer_types"] = dict(sorted(float_types.items()))
    return out


def quantize_nncf(model: ov.Model, arrays: Sequence[np.ndarray], preset: str,
                  keep_float: Sequence[str] = ()) -> ov.Model:
    """NNCF post-training quantisation (min-max statistics + fast bias correction) on
    ``arrays``, the same calibration tensors ORT INT8 gets; the layers named in
    ``keep_float`` stay in float (NNCF's ignored scope)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown NNCF preset {preset!r}; valid: {', '.join(PRESETS)}")
    import nncf  # slow to import; only INT8 needs it

    scope = {"ignored_scope": nncf.IgnoredScope(names=list(keep_float))} if keep_float else {}
    return nncf.quantize(model, nncf.Dataset(list(arrays)), subset_size=len(arrays),
                         preset=nncf.QuantizationPreset(preset),
                         target_device=nncf.TargetDevice.CPU, **scope)


@dataclass
class OpenVinoRuntime:
    name: str
    precision: str  # fp32 / bf16 / int8

    @property
    def precision_hint(self) -> str:
        """bf16 only for the bf16 row; INT8 keeps f32 so non-quantised layers stay f32."""
        return "bf16" if self.precision == "bf16" else "f32"

    def unavailable_reason(self) -> str | None:
        if self.precision == "bf16" and not machine.has_bf16():
            return ("bf16 needs avx512_bf16 or AMX; without them OpenVINO cannot run bf16 "
                    "natively")
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, threads: int,
                exporter: str = DEFAULT_EXPORTER, calibration: int | None = None,
                calibration_inputs: Sequence[calib.CalibrationInput] | None = None,
                preset: str = DEFAULT_PRESET, cpu_pinning: bool = True,
                onnx_file: str | None = None, streams: int = 1,
                keep_float: str | None = None) -> Prepared:
        """Export to ONNX, read, (quantise,) compile for the CPU with explicit properties.

        Options: ``exporter`` ("dynamo" / "legacy"); for INT8 ``calibration`` (count),
        ``calibration_inputs`` (explicit arrays) and ``preset`` ("performance": symmetric
        activations, "mixed": asymmetric); ``cpu_pinning`` (see :func:`compile_config`);
        ``onnx_file``: a user's ONNX file read as it is instead of an export of ``model``
        (whose weights are then ignored); dynamic input dimensions are fixed to the example's
        shape before compiling, as exported graphs have it; ``streams``: the threads shared
        out over that many streams (the call may then be made from that many threads at
        once); ``keep_float`` (INT8): "first", "last" or "first-last" convolution left in
        float, their names in the record.
        """
        directory = scratch_dir(f"segbench-{self.name}-")
        try:
            exported = (given_onnx(onnx_file) if onnx_file
                        else export_onnx(model, example, directory, exporter))
            info: dict[str, Any] = {**exported.info, "source": "onnx via Core.read_model",
                                    "openvino": ov.__version__,
                                    "telemetry_blocked": TELEMETRY_BLOCKED}
            core = ov.Core()
            with stage("openvino read"):
                ov_model = core.read_model(str(exported.path))
            if onnx_file and ov_model.is_dynamic():
                with stage("openvino reshape"):
                    ov_model.reshape(list(example.shape))
                info["reshaped_to"] = list(example.shape)
            if self.precision == "int8":
                arrays = calib.calibration_inputs(example, calibration, calibration_inputs)
                kept = float_convolutions(ov_model, keep_float) if keep_float else []
                with stage("nncf quantize"):
                    ov_model = quantize_nncf(ov_model, arrays, preset, kept)
                info["quantization"] = {"tool": "nncf.quantize", "preset": preset,
                                        **calib.describe(arrays, calibration_inputs is not None)}
                if keep_float:
                    info["quantization"]["kept_float"] = kept
            elif keep_float:
                raise ValueError(f"keep_float is an INT8 option; {self.name} quantises nothing")
            config = compile_config(self.precision_hint, threads, cpu_pinning, streams)
            with stage("openvino compile"):
                compiled = core.compile_model(ov_model, DEVICE, config)
        except BaseException:
            remove_dir(directory)
            raise
        info.update(requested=config, compiled=compiled_properties(compiled),
                    layers=layer_precisions(compiled, list_float=self.precision != "fp32"))
        return Prepared(call=self._caller(compiled), info=info,
                        cleanup=lambda: remove_dir(directory))

    @staticmethod
    def _caller(compiled: ov.CompiledModel) -> Any:
        import queue

        # infer requests owned by the caller (not by the calling threads, whose thread-local
        # objects would outlive the model): one is made when a call finds none free, so calls
        # from S threads at once (streams) end with S requests
        free: queue.SimpleQueue = queue.SimpleQueue()
        made: list[Any] = []

        def call(x: torch.Tensor) -> np.ndarray | list[np.ndarray]:
            try:
                request = free.get_nowait()
            except queue.Empty:
                request = compiled.create_infer_request()
                made.append(request)
            try:
                # inputs shared (zero-copy, like ORT's x.numpy()); outputs copied out, as ORT
                # and eager hand back fresh arrays, and so they outlive the request
                result = request.infer({0: x.numpy()}, share_inputs=True, share_outputs=False)
            finally:
                free.put(request)
            outputs = list(result.to_tuple())
            return outputs[0] if len(outputs) == 1 else outputs

        return call


RUNTIMES = {
    "openvino-fp32": OpenVinoRuntime("openvino-fp32", "fp32"),
    "openvino-bf16": OpenVinoRuntime("openvino-bf16", "bf16"),
    "openvino-int8": OpenVinoRuntime("openvino-int8", "int8"),
}
