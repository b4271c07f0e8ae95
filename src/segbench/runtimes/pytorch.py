"""PyTorch runtimes: eager FP32 (the reference), torch.compile FP32 and torch.compile + bf16."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segbench import machine
from segbench.runtimes import Prepared, refuse_onnx_file


def _memory_format(example: torch.Tensor, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    if example.dim() == 4:
        return torch.channels_last
    if example.dim() == 5:
        return torch.channels_last_3d
    return torch.contiguous_format


@dataclass
class TorchRuntime:
    name: str
    precision: str
    compiled: bool

    def unavailable_reason(self) -> str | None:
        if self.precision == "bf16" and not machine.has_bf16():
            return ("bf16 needs avx512_bf16 or AMX; without them autocast emulates bf16 and is "
                    "slower than fp32")
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, threads: int,
                channels_last: bool = True) -> Prepared:
        refuse_onnx_file(self.name, model)
        torch.set_num_threads(threads)
        fmt = _memory_format(example, channels_last)
        model = model.eval()
        if fmt != torch.contiguous_format:
            model = model.to(memory_format=fmt)
        info: dict[str, Any] = {"torch": torch.__version__,
                                "memory_format": str(fmt).split(".")[-1]}
        if self.compiled:
            import torch._inductor.config as inductor_config

            # Freezing folds weights into constants and lets inductor pre-pack them for oneDNN;
            # it needs no_grad (not inference_mode) around the calls.
            inductor_config.freezing = True
            model = torch.compile(model, backend="inductor")
            info.update(backend="inductor", freezing=True)
        grad_ctx = torch.no_grad if self.compiled else torch.inference_mode
        bf16 = self.precision == "bf16"
        info["autocast"] = "bf16" if bf16 else None

        def call(x: torch.Tensor) -> Any:
            x = x.contiguous(memory_format=fmt) if fmt != torch.contiguous_format else x
            amp = (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
                   else contextlib.nullcontext())
            with grad_ctx(), amp:
                return model(x)

        return Prepared(call=call, info=info)


RUNTIMES = {
    "eager": TorchRuntime("eager", "fp32", compiled=False),
    "compile": TorchRuntime("compile", "fp32", compiled=True),
    "compile-bf16": TorchRuntime("compile-bf16", "bf16", compiled=True),
}
