"""A user's own 2D network's input and output around the slice loop (``Pipeline.windows`` and
``Pipeline.size``; :func:`segbench.pipelines.loop.slice_batch` and ``run_2d`` call these).

The project's 2D networks take its three display windows scaled to [-1, 1] on the CT's own
plane. A network someone else trained (an ONNX file) was trained on its own windowing and
often at a fixed slice size, so its pipeline says both:

- **windows**: one (centre, width) in HU per input channel; each channel is the slice clipped
  to [centre - width / 2, centre + width / 2] and scaled linearly to [0, 1]. One window per
  channel, or one window repeated over the channels (see ``segbench.ownnet``).
- **size**: the (y, x) the network takes. Slices are resized to it bilinearly (no padding,
  no cropping: a 512 x 512 CT and a 256 x 256 network meet halfway), and the logits are
  resized back to the CT's plane bilinearly, one slice at a time, before the argmax (labels
  a network returns itself go back by nearest neighbour).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def windowed(hu: np.ndarray, windows: Sequence[Sequence[float]]) -> np.ndarray:
    """(..., y, x) HU -> (..., len(windows), y, x) float32: channel i is ``hu`` clipped to the
    window (centre, width) = ``windows[i]`` and scaled linearly to [0, 1]."""
    channels = [np.clip((hu - (c - w / 2)) / w, 0.0, 1.0) for c, w in windows]
    return np.stack(channels, axis=-3).astype(np.float32, copy=False)


def resize_slices(hu: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(n, y, x) slices resized bilinearly to ``size`` (y, x); as they are when they fit."""
    if tuple(hu.shape[1:]) == tuple(size):
        return hu
    x = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[:, None]
    out = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear",
                                          align_corners=False)
    return out[:, 0].numpy()


def labels_resized(out: torch.Tensor, hw: Sequence[int]) -> np.ndarray:
    """Labels on the CT's plane ``hw`` from a network fed resized slices: logits resized back
    bilinearly one slice at a time (so 100+ classes never sit at full size for a whole batch),
    then the argmax; labels a network returns itself by nearest neighbour."""
    import torch.nn.functional as F

    hw = tuple(int(n) for n in hw)
    if out.dim() == 3:  # labels from the graph
        if tuple(out.shape[-2:]) == hw:
            return out.to(torch.uint8).numpy()
        return F.interpolate(out[:, None].float(), size=hw, mode="nearest")[:, 0].to(
            torch.uint8).numpy()
    labels = np.empty((out.shape[0], *hw), dtype=np.uint8)
    for i in range(out.shape[0]):
        logits = out[i:i + 1].float()
        if tuple(logits.shape[-2:]) != hw:
            logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
        labels[i] = logits.argmax(1)[0].to(torch.uint8).numpy()
    return labels
