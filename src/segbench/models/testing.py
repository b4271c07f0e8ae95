"""Small networks that exist to test the harness: one that works, and ones that fail.

They let the tests (and a curious user) check that a failing, hanging or crashing model becomes
a row with its reason while the run goes on, without waiting for a real network.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn


class TinySeg(nn.Module):
    """Conv-BN-ReLU down, transposed conv up, 1x1 head: a segmentation net in miniature."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                     nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(8, 8, 2, stride=2), nn.ReLU())
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


class NoExport(TinySeg):
    """TinySeg followed by a Bessel function: runs in eager, but neither ONNX exporter (dynamo
    or TorchScript) can translate ``torch.special.i0``, so every ONNX-based runtime fails at
    export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(super().forward(x))


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model always fails")


class Hangs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            time.sleep(1)


class Crashes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os._exit(139)  # what a segfaulting native kernel looks like from outside


class KillsItself(nn.Module):
    """Dies of SIGKILL on real tensors, as a worker the kernel's OOM killer picks does (on the
    meta device, where the memory estimate runs, it is harmless)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "meta":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return x


class TestingFamily:
    dims = 2
    size_multiple = 2
    _models = {"tiny": TinySeg, "noexport": NoExport, "raise": Raises, "hang": Hangs,
               "crash": Crashes, "sigkill": KillsItself}

    def names(self) -> list[str]:
        return list(self._models)

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        cls = self._models[name]
        return cls(classes) if issubclass(cls, TinySeg) else cls()

    build_untrained = build  # nothing to settle or fuse: trainable as built

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        return {}


FAMILIES = {"testing": TestingFamily()}
