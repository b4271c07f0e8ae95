"""The whole-CT methods compared on real CT, and how each becomes a label volume.

- ``2d-original``: the original recipe's network, MobileNetV4-Conv-Small + Semantic FPN 128,
  output path ``full`` (x4 bilinear logits, argmax);
- ``2d-champion``: the champion's network, the same encoder + FPN 64, with its ``lowres`` path
  (argmax at 1/4 in-plane, labels x4 nearest) and the exact ``full`` path beside it;
- ``3d-fast``: TotalSegmentator --fast's architecture (nnU-Net PlainConvUNet, 3 mm, patch
  112x112x128), sliding window with Gaussian blending, labels back by nearest
  (``pipelines.loop.run_3d``, the whole-CT benchmark's own pipeline).

A 2D network sees the CT's own grid slice by slice (padded to a multiple of 32 with air), as in
the whole-CT benchmark. Every runtime runs the whole 2D pipeline, output path included
(``models.pipeline.Pipeline``), and the 3D network inside the sliding window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from segbench.realct.dataset import Volume
from segbench.realct.training import Recipe, pad_slices

SLICE_BATCH = 8
NET_3D = "totalseg-3mm"


@dataclass(frozen=True)
class Method:
    key: str
    display: str
    kind: str  # "2d" | "3d"
    network: str  # a pipeline name (2D) or a nets3d name (3D)
    paths: tuple[str, ...]
    batch: int  # training batch: slices (2D) or patches (3D)
    patch: tuple[int, int, int] | None = None  # 3D training patch (z, y, x)
    lr: float = 2e-3
    infer_patch: tuple[int, int, int] | None = None  # 3D tile; None: the network's plans

    def quick(self) -> "Method":
        """The smoke-run variant: 3D patches and tiles small enough for seconds."""
        if self.kind != "3d":
            return self
        return replace(self, patch=(16, 32, 32), infer_patch=(16, 32, 32))

    def recipe(self, core_minutes: float) -> Recipe:
        return Recipe(core_minutes, self.batch, self.lr, self.patch)


METHODS = (
    Method("2d-original", "2D original (MobileNetV4-Conv-Small + FPN 128)", "2d",
           "mobilenetv4_conv_small", ("full",), batch=16),
    Method("2d-champion", "2D champion (MobileNetV4-Conv-Small + FPN 64)", "2d",
           "mobilenetv4_conv_small-w64", ("lowres", "full"), batch=16),
    Method("3d-fast", "3D TotalSegmentator --fast (nnU-Net 3 mm)", "3d", NET_3D,
           ("nearest",), batch=2, patch=(48, 80, 80)),
)
METHOD_KEYS = tuple(m.key for m in METHODS)
DEFAULT_RUNTIMES = {"2d": ("eager", "openvino-bf16", "compile-int8"),
                    "3d": ("eager", "openvino-bf16", "openvino-int8")}
DEFAULT_CORE_MINUTES = 20.0  # the equal training budget of every network (CPU time)
CALIBRATION = 16  # INT8 calibration inputs, from training cases only


def runtimes_for(kind: str, given: list[str] | None, quick: bool) -> list[str]:
    """The runtimes a method is scored under: ``given``, else its kind's defaults (a quick
    run: eager only)."""
    if quick and not given:
        return ["eager"]
    return list(given or DEFAULT_RUNTIMES[kind])


def method(key: str) -> Method:
    for m in METHODS:
        if m.key == key:
            return m
    raise KeyError(f"unknown method {key!r}; valid: {', '.join(METHOD_KEYS)}")


def trainable(m: Method, classes: int) -> nn.Module:
    """The network from its random init (seeded), in train mode's shape for the loss."""
    torch.manual_seed(0)
    if m.kind == "2d":
        from segbench.models.pipeline import PipelineFamily

        return PipelineFamily().build_untrained(m.network, classes, path="full")
    from segbench.models.nets3d import PLAIN_UNETS, build_plain_unet

    return build_plain_unet(PLAIN_UNETS[m.network], classes)


def for_inference(m: Method, trained: nn.Module, path: str) -> nn.Module:
    """The trained network as the pipeline a runtime prepares: 2D with its output path."""
    if m.kind == "3d":
        return trained.eval()
    from segbench.labels import DEFAULT_BLOCK_ROWS
    from segbench.models import reparameterize
    from segbench.models.pipeline import Pipeline

    return reparameterize(Pipeline(trained.net, path, DEFAULT_BLOCK_ROWS).eval()).eval()


def pipeline_3d(m: Method, classes: int) -> Any:
    from segbench.catalogue import Pipeline
    from segbench.models.nets3d import PLAIN_UNETS

    cfg = PLAIN_UNETS[m.network]
    return Pipeline(kind="3d", network=m.network, classes=classes, spacing_mm=cfg.spacing_mm,
                    patch=m.infer_patch or cfg.patch, step=0.5, back="nearest")


def slice_input(hu: np.ndarray, first: int, batch: int) -> torch.Tensor:
    """Slices first .. first + batch - 1 (a short last batch repeats its last slice), padded
    to multiples of 32 with air, through the training windows: (batch, 3, H', W')."""
    from segbench.data.phantom import to_input

    part = hu[first:first + batch]
    if len(part) < batch:
        part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
    return torch.from_numpy(to_input(pad_slices(part, 32, -1024.0)))


def example(m: Method, volume: Volume, classes: int) -> torch.Tensor:
    """One network call's input from a (training) case: a batch of slices or a centre tile."""
    if m.kind == "2d":
        return slice_input(volume.hu, volume.hu.shape[0] // 2, SLICE_BATCH)
    from segbench.measure import StageClock
    from segbench.pipelines.inputs import centre_tile
    from segbench.pipelines.loop import preprocess_3d
    from segbench.pipelines.scan import CT

    pipe = pipeline_3d(m, classes)
    return centre_tile(preprocess_3d(CT(volume.hu, volume.spacing), pipe, StageClock()),
                       pipe.patch)


def calibration(m: Method, volumes: Sequence[Volume], classes: int, count: int
                ) -> list[np.ndarray]:
    """INT8 calibration inputs from training cases only (never a scored case)."""
    if m.kind == "2d":
        picks = np.linspace(0, len(volumes) - 1, count).astype(int)
        out = []
        for i, v in zip(picks, range(count)):
            vol = volumes[int(i)]
            z = int(np.linspace(0.2, 0.8, count)[v] * vol.hu.shape[0])
            out.append(slice_input(vol.hu, z, SLICE_BATCH).numpy())
        return out
    from segbench.pipelines.inputs import calibration_passes
    from segbench.pipelines.scan import CT

    pipe = pipeline_3d(m, classes)
    per = max(1, count // max(1, len(volumes)))
    out = []
    for vol in volumes:
        out += calibration_passes(CT(vol.hu, vol.spacing), pipe, per, phantom=False)
        if len(out) >= count:
            break
    return out[:count]


def segment(m: Method, call: Callable[[torch.Tensor], Any], volume: Volume, classes: int
            ) -> np.ndarray:
    """The label volume (uint8, the case's grid) of one method under one prepared runtime."""
    if m.kind == "3d":
        from segbench.measure import StageClock
        from segbench.pipelines.loop import run_3d
        from segbench.pipelines.scan import CT

        return run_3d(call, CT(volume.hu, volume.spacing), pipeline_3d(m, classes),
                      StageClock())
    depth, h, w = volume.hu.shape
    labels = np.empty((depth, h, w), np.uint8)
    for first in range(0, depth, SLICE_BATCH):
        real = min(SLICE_BATCH, depth - first)
        out = call(slice_input(volume.hu, first, SLICE_BATCH))
        if isinstance(out, (list, tuple)):
            out = out[0]
        out = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        labels[first:first + real] = out[:real, :h, :w]
    return labels
