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
- ``corners``: bilinear labels without upsampling 117 channels. An output pixel's bilinear
  logits are a convex combination of the logits at its 2x2 low-resolution corners; if one
  class wins at all four corners it wins the combination, and in general the winner is almost
  always one of the (at most four) corner winners. So only those candidates are interpolated:
  per output phase (the s x s sub-pixel positions share their corner offsets and weights),
  the candidates' logits at the corners are gathered at low resolution and weighted, the best
  candidate is kept, and the phases are interleaved into the full-resolution map. Same labels
  as ``full`` wherever the full winner is a corner winner (rarely not, at junctions of three
  or more organs), at a few percent of its arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PATHS = ("full", "blocked", "lowres", "corners")
REFERENCE_PATH = "full"
DEFAULT_BLOCK_ROWS = 4  # low-resolution rows per block: 16 output rows of 512 x 117 floats
CORNER_TOP = 2  # candidates per corner of the ``corners`` path


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


def _phase_weights(scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the scale x scale output phases (r, q): the bilinear weight of each of the
    3 x 3 low-resolution neighbours (offsets -1, 0, +1; zero outside its 2x2 corners), and a
    mask that is 0 for those corners and very negative elsewhere. Shapes (s*s, 9), (s*s, 9).

    ``align_corners=False``: output row ``s*i + r`` samples row ``i + (r + 0.5) / s - 0.5``.
    """
    weights = torch.zeros(scale * scale, 9)
    for r in range(scale):
        for q in range(scale):
            wy = _axis_weights((r + 0.5) / scale - 0.5)
            wx = _axis_weights((q + 0.5) / scale - 0.5)
            for u, a in wy.items():
                for v, b in wx.items():
                    weights[r * scale + q, u * 3 + v] += a * b
    corners = torch.zeros(scale * scale, 9, dtype=torch.bool)
    for r in range(scale):
        for q in range(scale):
            for u in _axis_weights((r + 0.5) / scale - 0.5):
                for v in _axis_weights((q + 0.5) / scale - 0.5):
                    corners[r * scale + q, u * 3 + v] = True
    mask = torch.where(corners, 0.0, -1e30)
    return weights, mask


def _axis_weights(offset: float) -> dict[int, float]:
    """Neighbour index (0, 1, 2 for -1, 0, +1) -> weight, for a sample at ``offset`` rows."""
    low = -1 if offset < 0 else 0
    lam = offset - low
    return {low + 1: 1.0 - lam, low + 2: lam}


def corner_labels(lowres: torch.Tensor, scale: int, top: int = CORNER_TOP) -> torch.Tensor:
    """Bilinear-upsampled argmax, restricted to the ``top`` best classes of each of the four
    corners (see the module notes).

    Replicate padding by one low-resolution pixel reproduces the clamping of the upsample at
    the image border.
    """
    n, _, h, w = lowres.shape
    padded = F.pad(lowres, (1, 1, 1, 1), mode="replicate")
    if top == 1:
        winners = padded.argmax(1, keepdim=True)  # (N, 1, h+2, w+2)
    else:
        winners = padded.topk(top, dim=1).indices  # (N, top, h+2, w+2)
    shifts = [(u, v) for u in range(3) for v in range(3)]
    # the candidates of the 9 neighbours of every low-resolution pixel: (N, 9 * top, h, w)
    classes = torch.cat([winners[:, :, u:u + h, v:v + w] for u, v in shifts], dim=1)
    # values[:, e, f] = logit, at neighbour e, of candidate f. The candidates' index is padded
    # to the logits' size rather than the logits sliced: ONNX export folds a slice that feeds
    # a gather into the gather, which OpenVINO then rejects.
    values = torch.stack([padded.gather(1, F.pad(classes, (v, 2 - v, u, 2 - u)))
                          [:, :, u:u + h, v:v + w] for u, v in shifts], dim=1)  # (N,9,9*top,h,w)
    weights, mask = _phase_weights(scale)
    weights = weights.to(lowres.dtype)
    mask = mask.to(lowres.dtype).repeat_interleave(top, dim=1)  # candidates of a neighbour
    scores = torch.einsum("pe,nefhw->npfhw", weights, values)  # (N, s*s, 9 * top, h, w)
    scores = scores + mask[None, :, :, None, None]
    best = scores.argmax(2, keepdim=True)  # (N, s*s, 1, h, w)
    labels = classes[:, None].expand(n, scale * scale, 9 * top, h, w).gather(2, best)
    labels = labels.to(torch.uint8).reshape(n, scale, scale, h, w)
    return labels.permute(0, 3, 1, 4, 2).reshape(n, h * scale, w * scale)


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
        elif path == "corners":
            out = corner_labels(logits, scale)
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
        if self.path == "corners":
            return corner_labels(logits, self.scale)
        return lowres_labels(logits, self.scale)
