"""From logits to a label map: the last stage of a deployed 2D segmenter.

A 2D network of :mod:`segbench.models.seg2d` ends in 1/4-resolution logits (``head``) followed
by a x4 bilinear upsample (``upsample``). What a user keeps is the uint8 map of organ labels at
the input's resolution, and how the logits become that map costs a large share of a pass:
117 full-resolution channels are 30.7 M values per 512x512 slice. The output *paths* here are
the ways of getting the label map; each is an ``nn.Module`` (:class:`LabelNet`), so a runtime
(ONNX export, OpenVINO, torch.compile) sees the whole pipeline, and a plain function
(:func:`labels_from_logits`) for code that already holds low-resolution logits.

- ``full``: the network's own x4 bilinear upsample of all logits, then argmax (the reference);
- ``blocked``: the same bilinear upsample and argmax, done a few low-resolution rows at a time
  so the upsampled block stays in cache. Each block upsamples its rows plus one halo row on
  each side (bilinear with ``align_corners=False`` reads one neighbouring row: output row
  ``4i + r`` interpolates rows ``i - 1, i`` for ``r < 2`` and ``i, i + 1`` for ``r >= 2``,
  clamped at the image border) and keeps only its own output rows. Interpolation coordinates
  are shift-invariant by whole rows and the clamping at a slice end coincides with the image's
  border only where the slice ends there, so the kept values are computed exactly as in
  ``full`` and the labels are identical;
- ``lowres``: argmax of the 1/4-resolution logits, then nearest x4 upsample of the labels
  (16 times less argmax work, no upsample of logits; blockier boundaries);
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PATHS = ("full", "blocked", "lowres")
REFERENCE_PATH = "full"
DEFAULT_BLOCK_ROWS = 4  # low-resolution rows per block: 16 output rows of 512 x 117 floats


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"unknown output path {path!r}; valid: {', '.join(PATHS)}")
    return path


def _scale_of(lowres: torch.Tensor, out_hw: Sequence[int]) -> int:
    h, w = lowres.shape[-2:]
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    if out_h % h or out_w % w or out_h // h != out_w // w:
        raise ValueError(f"output size {out_h}x{out_w} is not one integer multiple of the "
                         f"logits' {h}x{w}")
    return out_h // h


def _to_labels(scores: torch.Tensor) -> torch.Tensor:
    return scores.argmax(1).to(torch.uint8)


def full_labels(lowres: torch.Tensor, scale: int) -> torch.Tensor:
    up = F.interpolate(lowres, scale_factor=float(scale), mode="bilinear", align_corners=False)
    return _to_labels(up)


def blocked_labels(lowres: torch.Tensor, scale: int,
                   block_rows: int = DEFAULT_BLOCK_ROWS) -> torch.Tensor:
    """Bilinear upsample + argmax, ``block_rows`` low-resolution rows at a time.

    The loop is over Python ints (the spatial size is static), so tracing or export unrolls
    it into a fixed graph of slices, resizes and argmaxes.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    h = lowres.shape[-2]
    blocks = []
    for top in range(0, h, block_rows):
        bottom = min(top + block_rows, h)
        first, last = max(top - 1, 0), min(bottom + 1, h)  # one halo row each side
        up = F.interpolate(lowres[:, :, first:last], scale_factor=float(scale),
                           mode="bilinear", align_corners=False)
        start = scale * (top - first)
        blocks.append(_to_labels(up[:, :, start:start + scale * (bottom - top)]))
    return torch.cat(blocks, dim=1)


def lowres_labels(lowres: torch.Tensor, scale: int) -> torch.Tensor:
    """Argmax at low resolution, then nearest upsample of the labels (by broadcasting,
    which every exporter handles and which equals ``interpolate(mode="nearest")``)."""
    labels = _to_labels(lowres)
    n, h, w = labels.shape
    return labels[:, :, None, :, None].expand(n, h, scale, w, scale).reshape(
        n, h * scale, w * scale)


def labels_from_logits(logits_lowres: torch.Tensor, path: str, out_hw: Sequence[int],
                       block_rows: int = DEFAULT_BLOCK_ROWS) -> torch.Tensor:
    """uint8 labels ``(N, H, W)`` (or ``(H, W)`` for a 3D input) from 1/s-resolution logits.

    ``logits_lowres`` is ``(N, C, h, w)`` or ``(C, h, w)``, a torch tensor or anything
    ``torch.as_tensor`` takes (a runtime's numpy output); ``out_hw`` must be an integer
    multiple of ``(h, w)``. Usable outside a graph, e.g. in a whole-CT pipeline whose runtime
    returns low-resolution logits.
    """
    check_path(path)
    logits = torch.as_tensor(logits_lowres)
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    squeeze = logits.dim() == 3
    if squeeze:
        logits = logits[None]
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, C, h, w) or (C, h, w), got {tuple(logits.shape)}")
    logits = logits.float()
    scale = _scale_of(logits, out_hw)
    with torch.no_grad():
        if path == "full":
            out = full_labels(logits, scale)
        elif path == "blocked":
            out = blocked_labels(logits, scale, block_rows)
        else:
            out = lowres_labels(logits, scale)
    return out[0] if squeeze else out


def lowres_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A :class:`~segbench.models.seg2d.Seg2D`'s logits before its final upsample."""
    return net.head(net.decoder(net.encoder(x)))


def output_scale(net: nn.Module) -> int:
    """The x-factor of the net's final upsample (its decoder's output stride)."""
    return int(getattr(net.decoder, "output_stride", 1))


class LabelNet(nn.Module):
    """``net`` followed by one output path: float32 ``(N, 3, H, W)`` -> uint8 ``(N, H, W)``.

    ``net`` is a :class:`~segbench.models.seg2d.Seg2D` (``encoder``, ``decoder``, ``head``,
    ``upsample``). ``full`` calls the net's own upsample module, so its labels are exactly the
    argmax of the net's usual output.
    """

    def __init__(self, net: nn.Module, path: str = REFERENCE_PATH,
                 block_rows: int = DEFAULT_BLOCK_ROWS) -> None:
        super().__init__()
        for part in ("encoder", "decoder", "head", "upsample"):
            if not hasattr(net, part):
                raise ValueError(f"LabelNet needs a Seg2D-like net with .{part}")
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.net = net
        self.path = check_path(path)
        self.block_rows = block_rows
        self.scale = output_scale(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = lowres_logits(self.net, x)
        if self.scale == 1:
            return _to_labels(logits)
        if self.path == "full":
            return _to_labels(self.net.upsample(logits))
        if self.path == "blocked":
            return blocked_labels(logits, self.scale, self.block_rows)
        return lowres_labels(logits, self.scale)
