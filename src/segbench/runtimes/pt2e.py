"""PyTorch-native INT8: PT2E static post-training quantisation, compiled by inductor.

The model is captured with ``torch.export``, annotated by torchao's x86 inductor quantiser
(its default config: int8 per-channel symmetric weights, uint8 per-tensor affine activations,
static scales), observed on the calibration inputs every INT8 runtime shares
(:mod:`segbench.runtimes.calibration`), converted to quantise/dequantise pairs around the ops
the quantiser covers, then handed to ``torch.compile`` with freezing: inductor's x86 passes
(registered by torchao) fold each dequantise -> conv -> quantise pattern into one oneDNN
quantised convolution with pre-packed int8 weights. What the quantiser does not cover (an
upsample, an argmax) stays float between a dequantise and a quantise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segbench import machine
from segbench.runtimes import Prepared, refuse_onnx_file
from segbench.runtimes import calibration as calib
from segbench.runtimes.export import stage

_QDQ_NAMES = ("quantize_per_tensor", "quantize_per_channel", "dequantize_per_tensor",
              "dequantize_per_channel")


def quantize_pt2e(model: nn.Module, example: torch.Tensor, arrays: Sequence[Any]
                  ) -> torch.fx.GraphModule:
    """Export, annotate with the x86 inductor quantiser, calibrate, convert."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    with stage("torch.export"), torch.no_grad():
        graph = torch.export.export(model.eval(), (example,), strict=False).module()
    with stage("pt2e prepare"):
        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
    with stage("pt2e calibration"), torch.no_grad():
        for array in arrays:
            prepared(torch.as_tensor(array))
    with stage("pt2e convert"):
        return convert_pt2e(prepared)


def qdq_counts(graph: torch.fx.GraphModule) -> dict[str, int]:
    """How many quantise / dequantise nodes the converted graph holds, by op name."""
    counts: Counter[str] = Counter()
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        for qdq in _QDQ_NAMES:
            if qdq in name:
                counts[qdq] += 1
    return dict(sorted(counts.items()))


@dataclass
class Pt2eRuntime:
    name: str
    precision: str = "int8"

    def unavailable_reason(self) -> str | None:
        if not {"avx512_vnni", "avx_vnni", "amx_int8"} & machine.cpu_flags():
            return ("oneDNN's int8 convolutions need VNNI or AMX; without them PT2E int8 is "
                    "slower than fp32")
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, threads: int,
                calibration: int | None = None,
                calibration_inputs: Sequence[calib.CalibrationInput] | None = None) -> Prepared:
        """Options: ``calibration`` (count) and ``calibration_inputs`` (explicit arrays), as
        for the other INT8 runtimes."""
        refuse_onnx_file(self.name, model)
        torch.set_num_threads(threads)
        arrays = calib.calibration_inputs(example, calibration, calibration_inputs)
        converted = quantize_pt2e(model, example, arrays)
        counts = qdq_counts(converted)
        import torch._inductor.config as inductor_config

        # Freezing is what lets inductor's quantisation passes fuse and pre-pack the weights.
        inductor_config.freezing = True
        with stage("torch.compile"):
            compiled = torch.compile(converted, backend="inductor")
        info: dict[str, Any] = {
            "torch": torch.__version__, "backend": "inductor", "freezing": True,
            "quantization": {"method": "PT2E static, X86InductorQuantizer default config",
                             "weights": "int8 per-channel symmetric",
                             "activations": "uint8 per-tensor affine",
                             **calib.describe(arrays, calibration_inputs is not None),
                             "qdq_nodes": counts}}

        def call(x: torch.Tensor) -> Any:
            with torch.no_grad():
                return compiled(x)

        return Prepared(call=call, info=info)


RUNTIMES = {"compile-int8": Pt2eRuntime("compile-int8")}
