"""Networks of the champion benchmark: whole slice -> label map pipelines, and peak probes.

``fpn-labels``: encoder + Semantic FPN + head + one output path of :mod:`segbench.labels`,
float32 ``(N, 3, H, W)`` -> uint8 ``(N, H, W)``. The decoder width is part of the *name*
(``mobilenetv4_conv_small`` is the original 128 channels, ``mobilenetv4_conv_small-w64`` has
64), so trained weights of different widths are cached under different names; the output path
is an option (``options={"path": "lowres"}``) because every path shares the same weights.
In train mode a pipeline is just its network (logits, for the loss); in eval mode it gives
labels, which is what runtimes export or compile.

``probe``: one large convolution whose GFLOP/s under a runtime is this CPU's practical peak for
that runtime's precision (a 3x3 conv at a width where oneDNN is compute-bound).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from segbench.catalogue import DEFAULT_WIDTH, WIDTHS, pipeline_name  # noqa: F401
from segbench.labels import DEFAULT_BLOCK_ROWS, REFERENCE_PATH, LabelNet, check_path
from segbench.models.encoders import ENCODERS, prepare_for_inference
from segbench.models.seg2d import FAMILIES as SEG2D_FAMILIES

_NAME = re.compile(r"^(?P<encoder>[a-z0-9_]+?)(?:-w(?P<width>\d+))?$")


def split_name(name: str) -> tuple[str, int]:
    """``"resnet18-w64"`` -> ``("resnet18", 64)``; no suffix is the original width."""
    match = _NAME.match(name)
    if not match or match["encoder"] not in ENCODERS:
        raise ValueError(f"unknown pipeline network {name!r}")
    return match["encoder"], int(match["width"] or DEFAULT_WIDTH)


class Prefix(nn.Module):
    """The first stages of a Seg2D, from the image: ``encoder``, ``decoder`` or ``head``."""

    def __init__(self, net: nn.Module, upto: str) -> None:
        super().__init__()
        self.net = net
        self.upto = upto

    def forward(self, x: torch.Tensor) -> Any:
        out = self.net.encoder(x)
        if self.upto == "encoder":
            return out
        out = self.net.decoder(out)
        return out if self.upto == "decoder" else self.net.head(out)


class Pipeline(LabelNet):
    """A :class:`LabelNet` that is its plain network while training.

    ``encoder``, ``upto_decoder`` and ``upto_logits`` are the pipeline's prefixes (image in),
    which a cell can time alone (``Cell.submodules``) to split a pass into encoder, decoder, head
    and upsample+argmax.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        return super().forward(x)

    @property
    def encoder(self) -> nn.Module:
        return Prefix(self.net, "encoder")

    @property
    def upto_decoder(self) -> nn.Module:
        return Prefix(self.net, "decoder")

    @property
    def upto_logits(self) -> nn.Module:
        return Prefix(self.net, "head")


class PipelineFamily:
    dims = 2
    size_multiple = 32

    def names(self) -> list[str]:
        return [pipeline_name(e, w) for e in SEG2D_FAMILIES["fpn"].names() for w in WIDTHS]

    def build_untrained(self, name: str, classes: int, path: str = REFERENCE_PATH,
                        block_rows: int = DEFAULT_BLOCK_ROWS) -> Pipeline:
        encoder, width = split_name(name)
        net = SEG2D_FAMILIES["fpn"].build_untrained(encoder, classes, pyramid_channels=width)
        return Pipeline(net, check_path(path), block_rows)

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        return prepare_for_inference(self.build_untrained(name, classes, **options))

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        encoder, width = split_name(name)
        info = SEG2D_FAMILIES["fpn"].describe(encoder, classes, pyramid_channels=width)
        info["display"] = f"{info['display']} {width}"
        return {**info, "encoder": encoder, "width": width,
                "path": options.get("path", REFERENCE_PATH)}


class ConvProbe(nn.Module):
    """``depth`` 3x3 convs at ``width`` channels: compute-bound, nothing else in the graph."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 1)
        self.convs = nn.Sequential(*(nn.Conv2d(width, width, 3, padding=1)
                                     for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.stem(x))


PROBES = {"conv3x3-256": (256, 4)}


class ProbeFamily:
    dims = 2
    size_multiple = 1

    def names(self) -> list[str]:
        return list(PROBES)

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        width, depth = PROBES[name]
        torch.manual_seed(0)
        return ConvProbe(width, depth).eval()

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        width, depth = PROBES[name]
        return {"display": f"{depth} x conv3x3 {width}->{width}"}


FAMILIES = {"fpn-labels": PipelineFamily(), "probe": ProbeFamily()}
