"""ONNX Runtime on the CPU execution provider: FP32, and INT8 by static post-training
quantisation (QDQ) of the same FP32 export.

The INT8 record says which compute ops stayed float. Whether INT8 pays depends on that: a
network whose upsampling (ConvTranspose, Resize) or attention stays float pays a quantise /
dequantise pair around each of those ops and may end up slower than FP32.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime import quantization as ortq
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from segbench.runtimes import Prepared
from segbench.runtimes import calibration as calib
from segbench.runtimes.export import (
    DEFAULT_EXPORTER,
    export_onnx,
    given_onnx,
    remove_dir,
    root_cause,
    scratch_dir,
    stage,
)

ACTIVATION_TYPES = {"quint8": ortq.QuantType.QUInt8, "qint8": ortq.QuantType.QInt8}
DEFAULT_ACTIVATION = "quint8"
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Nodes that only move, reshape or index data (or compute shapes): not counted as compute, so
# the quantised/float tally is about arithmetic.
DATA_MOVEMENT_OPS = frozenset({
    "Constant", "ConstantOfShape", "Shape", "Size", "Identity", "Cast", "Reshape", "Flatten",
    "Squeeze", "Unsqueeze", "Transpose", "Gather", "Slice", "Split", "Concat", "Expand",
    "Range", "Pad",
})
# ORT kernels that compute in integer arithmetic besides the QLinear* family
INTEGER_KERNELS = frozenset({"QGemm", "ConvInteger", "MatMulInteger", "QAttention"})
PRE_FILE = "model.pre.onnx"
INT8_FILE = "model.int8.onnx"
OPTIMIZED_FILE = "model.int8.optimized.onnx"


def session_options(threads: int) -> ort.SessionOptions:
    """The protocol's thread rules: ``threads`` intra-op, one inter-op, sequential. Spinning is
    off: busy-waiting workers buy a little latency with whole cores of CPU time, which on a
    small shared machine slows everything else and makes the rows less comparable."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def create_session(path: Path, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])


class ArrayReader(ortq.CalibrationDataReader):
    """Feeds calibration arrays to ORT's calibrator, one input dict per call."""

    def __init__(self, input_name: str, arrays: Sequence[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{input_name: a} for a in arrays])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def activation_type(name: str) -> ortq.QuantType:
    if name not in ACTIVATION_TYPES:
        raise ValueError(f"unknown activation type {name!r}; valid: "
                         f"{', '.join(ACTIVATION_TYPES)}")
    return ACTIVATION_TYPES[name]


def quantize_onnx(fp32_path: Path, directory: Path, arrays: Sequence[np.ndarray],
                  activation: str = DEFAULT_ACTIVATION, external_data: bool = False) -> Path:
    """Static QDQ quantisation of an FP32 ONNX file: per-channel int8 weights, ``activation``
    activations, MinMax calibration on ``arrays``. Returns the INT8 file's path.

    ``quant_pre_process`` comes first, as ORT recommends: shape inference and graph fusions
    (Conv+BatchNorm and the like) before quantisation, so scales are computed on the fused ops
    that will actually run. Its symbolic shape inference is skipped: it exists for dynamic
    shapes, ours are static (ONNX shape inference covers them), and it crashes on the Expand
    nodes the dynamo exporter emits for EdgeNeXt.
    """
    act = activation_type(activation)
    pre_path, int8_path = directory / PRE_FILE, directory / INT8_FILE
    with stage("int8 pre-process"):
        quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True,
                          save_as_external_data=external_data)
    input_name = onnx.load(str(pre_path), load_external_data=False).graph.input[0].name
    with stage("int8 quantize"):
        ortq.quantize_static(str(pre_path), str(int8_path), ArrayReader(input_name, arrays),
                             quant_format=ortq.QuantFormat.QDQ, per_channel=True,
                             weight_type=ortq.QuantType.QInt8, activation_type=act,
                             calibrate_method=ortq.CalibrationMethod.MinMax,
                             use_external_data_format=external_data)
    return int8_path


def quantizer_report(model: onnx.ModelProto) -> dict[str, Any]:
    """What the quantiser did: compute nodes of the QDQ graph that read a dequantised input
    (quantised) and those that do not (left float).

    A compute node is neither Q/DQ nor data movement. This view says which ops the quantiser
    wrapped in Q/DQ, not which run in integer arithmetic: a wrapped op without an integer kernel
    still runs in float between a dequantise and a quantise (see :func:`executed_report`).
    """
    from_dq = {out for node in model.graph.node if node.op_type == "DequantizeLinear"
               for out in node.output}
    quantized: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or node.op_type in DATA_MOVEMENT_OPS:
            continue
        target = quantized if from_dq.intersection(node.input) else floating
        target[node.op_type] += 1
    return {"quantized_nodes": sum(quantized.values()), "float_nodes": sum(floating.values()),
            "float_op_types": dict(sorted(floating.items()))}


def is_integer_kernel(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type in INTEGER_KERNELS


def executed_report(model: onnx.ModelProto) -> dict[str, Any]:
    """What ORT runs: compute nodes of its optimised graph in integer arithmetic versus float.

    ORT fuses a DQ -> op -> Q group into an integer kernel (QLinearConv, QGemm, ...) only where
    it has one; the other ops stay float between a dequantise and a quantise, and that round
    trip is what makes INT8 fail to pay. Integer-ness is followed along the data flow, so an op
    that simply runs on uint8 data (MaxPool after a QLinearConv) counts as integer.
    """
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    constants.update(out for node in graph.node if node.op_type == "Constant"
                     for out in node.output)
    int8_tensors: set[str] = set()
    integer: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for node in graph.node:  # ORT saves its graph in topological order
        op = node.op_type
        if op == "DequantizeLinear" or op == "Constant":
            continue
        data = [name for name in node.input if name and name not in constants]
        on_int8 = op == "QuantizeLinear" or is_integer_kernel(op) or (
            bool(data) and all(name in int8_tensors for name in data))
        if on_int8:
            int8_tensors.update(node.output)
        if op in QDQ_OPS or op in DATA_MOVEMENT_OPS:
            continue
        (integer if on_int8 else floating)[op] += 1
    return {"int8_nodes": sum(integer.values()), "float_nodes": sum(floating.values()),
            "int8_op_types": dict(sorted(integer.items())),
            "float_op_types": dict(sorted(floating.items()))}


def optimized_graph(path: Path, directory: Path) -> onnx.ModelProto:
    """The graph ORT executes for ``path``, as its optimiser leaves it.

    Written by a separate one-thread inspection session at ORT_ENABLE_EXTENDED, the level that
    does the QDQ fusions but no hardware-specific layout changes, so the measured session stays
    exactly as configured for every other row.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(directory / OPTIMIZED_FILE)
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath, load_external_data=False)


def int8_weight_count(model: onnx.ModelProto) -> int:
    """Weight tensors stored as int8 and dequantised in the graph: the proof that the weights
    really are quantised (zero points, also 8-bit initialisers, are not counted)."""
    int8 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    return sum(1 for node in model.graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in int8)


@dataclass
class OrtRuntime:
    name: str
    precision: str  # fp32 / int8

    def unavailable_reason(self) -> str | None:
        return None  # the CPU execution provider runs everywhere

    def prepare(self, model: nn.Module, example: torch.Tensor, threads: int,
                exporter: str = DEFAULT_EXPORTER, calibration: int | None = None,
                calibration_inputs: Sequence[calib.CalibrationInput] | None = None,
                activation: str = DEFAULT_ACTIVATION, onnx_file: str | None = None
                ) -> Prepared:
        """Export (and for INT8 quantise) into a scratch directory, then open a session.

        Options: ``exporter`` ("dynamo" / "legacy"); for INT8 ``calibration`` (count),
        ``calibration_inputs`` (explicit arrays) and ``activation`` ("quint8" / "qint8");
        ``onnx_file``: a user's ONNX file run as it is instead of an export of ``model``
        (whose weights are then ignored; INT8 quantises that file).
        Options meant for other runtimes are ignored, as every runtime does.
        """
        directory = scratch_dir(f"segbench-{self.name}-")
        try:
            exported = (given_onnx(onnx_file) if onnx_file
                        else export_onnx(model, example, directory, exporter))
            info: dict[str, Any] = {**exported.info, "onnxruntime": ort.__version__}
            path = exported.path
            if self.precision == "int8":
                arrays = calib.calibration_inputs(example, calibration, calibration_inputs)
                path = quantize_onnx(path, directory, arrays, activation, exported.external_data)
                info["quantization"] = self._int8_info(path, directory, arrays, activation,
                                                       calibration_inputs is not None)
            with stage("ort session"):
                session = create_session(path, threads)
        except BaseException:
            remove_dir(directory)
            raise
        info.update(self._session_info(session, threads))
        return Prepared(call=self._caller(session), info=info,
                        cleanup=lambda: remove_dir(directory))

    @staticmethod
    def _int8_info(path: Path, directory: Path, arrays: Sequence[np.ndarray], activation: str,
                   explicit: bool) -> dict[str, Any]:
        """How the model was quantised and what stayed float, for the record."""
        quantized = onnx.load(str(path), load_external_data=False)
        try:
            executed = executed_report(optimized_graph(path, directory))
        except Exception as exc:  # noqa: BLE001 - only an inspection; the session still runs
            executed = {"error": root_cause(exc)}
        return {"format": "QDQ", "weights": "int8 per-channel", "activations": activation,
                "method": "MinMax", **calib.describe(arrays, explicit),
                "int8_weights": int8_weight_count(quantized),
                "stayed_float": executed.get("float_op_types"), "executed": executed,
                "quantizer": quantizer_report(quantized)}

    @staticmethod
    def _session_info(session: ort.InferenceSession, threads: int) -> dict[str, Any]:
        return {"providers": session.get_providers(), "intra_op_threads": threads,
                "inter_op_threads": 1, "graph_optimization": "ORT_ENABLE_ALL",
                "execution_mode": "sequential", "spinning": False}

    @staticmethod
    def _caller(session: ort.InferenceSession) -> Any:
        input_name = session.get_inputs()[0].name

        def call(x: torch.Tensor) -> np.ndarray | list[np.ndarray]:
            outputs = session.run(None, {input_name: x.numpy()})  # numpy(): zero-copy view
            return outputs[0] if len(outputs) == 1 else outputs

        return call


RUNTIMES = {
    "ort-fp32": OrtRuntime("ort-fp32", "fp32"),
    "ort-int8": OrtRuntime("ort-int8", "int8"),
}
