"""Static properties of a model on one input: parameters, FLOPs and forward-pass memory.

These are counted, never guessed, and they work on the ``meta`` device, so the footprint of a
3D network that would not fit in RAM can be known before anything is allocated (the memory
guard of the 2d_vs_3d benchmark relies on that).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tensors(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of tensors that ops allocate and that are still alive.

    Outputs that alias an input (views, in-place ops) allocate nothing and are not counted.
    A weakref finaliser gives the bytes back when Python drops the tensor, so ``peak`` is the
    high-water mark of activation memory during the forward pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if isinstance(out, (list, tuple)) else (out,)
        for i, t in enumerate(outs):
            if not isinstance(t, torch.Tensor):
                continue
            alias = returns[i].alias_info if i < len(returns) else None
            if alias is not None:
                continue
            nbytes = t.numel() * t.element_size()
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, nbytes)
        return out


def profile_forward(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FLOPs and forward memory from one eager forward pass instead of two (a 3D pass takes
    seconds): the FLOP counter and the live-bytes tracker are both dispatch modes and stack."""
    counter = FlopCounterMode(display=False)
    with counter:
        memory = forward_memory(model, example)
    return int(counter.get_total_flops()), memory


def forward_memory(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Bytes of parameters and buffers, and peak bytes of live activations in one forward.

    Measured in eager FP32 under no_grad, so it is a property of the network and the input
    shape; runtimes that fuse ops need less, which the per-runtime peak RSS shows.
    """
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    weights += sum(t.numel() * t.element_size() for t in model.buffers())
    tracker = _LiveBytes()
    with torch.no_grad(), tracker:
        out = model(example)
        del out
    input_bytes = example.numel() * example.element_size()
    return {"weight_bytes": int(weights), "activation_peak_bytes": int(tracker.peak),
            "input_bytes": int(input_bytes),
            "forward_peak_bytes": int(weights + tracker.peak + input_bytes)}


# --------------------------------------------------------------------------------------------
# Memory budget of a cell

BUDGET_ENV = "SEGBENCH_MEMORY_BUDGET"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """Bytes from "123", "64M", "64MiB", "2G", "1.5GB" (binary units); ValueError otherwise."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] else ""
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 64M, 2G or a number of bytes)") from None
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)


def memory_budget_bytes() -> int:
    """Bytes a cell may use: ``SEGBENCH_MEMORY_BUDGET`` when set (a what-if, and what lets a
    test pretend to be a small machine), else what the kernel reports available right now;
    0 when unknown."""
    from segbench import machine

    override = os.environ.get(BUDGET_ENV)
    if override:
        return parse_size(override)
    return machine.available_memory_bytes()


def gib(nbytes: float) -> str:
    """Bytes as GiB for a one-line reason: one decimal, two below 1 GiB."""
    g = nbytes / 2**30
    return f"{g:.1f} GiB" if g >= 1 else f"{g:.2f} GiB"
