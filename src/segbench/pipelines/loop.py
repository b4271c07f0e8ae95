"""The whole-CT loops: a CT in Hounsfield units in, a uint8 label volume on the CT's own grid out.

A per-pass time times a pass count leaves out everything around the network (resampling,
normalisation, blending, argmax, resampling back) and guesses the memory. The pipelines here
are the complete loops a user runs, so a benchmark can time them as one call:

- **2D slice-wise**: every axial slice through the display windows the 2D networks were
  trained with (``data.phantom.to_input``), in batches of a fixed size (the last one padded,
  since exported runtimes take one static shape), network, argmax, stacked into the volume.
  2D networks see the CT's own grid: no resampling. A user's own network (an ONNX file)
  brings its own input instead (``Pipeline.windows``: (centre, width) per channel, scaled to
  [0, 1]; ``Pipeline.size``: slices resized bilinearly to the size it takes, its logits
  resized back bilinearly before the argmax).
- **3D sliding window** (TotalSegmentator / nnU-Net / STU-Net): resample to the network's
  isotropic spacing (cubic spline, as TotalSegmentator resamples the image), nnU-Net's CT
  normalisation, sliding window with Gaussian blending and float16 accumulators
  (``volume.sliding_window_predict``), argmax, labels back to the original grid (both ends:
  :mod:`segbench.pipelines.resample`). Two ways back: ``"nearest"`` resamples the label map
  (what TotalSegmentator does after nnU-Net returns labels on its resampled grid),
  ``"probabilities"`` resamples the logits linearly and takes the argmax there (nnU-Net's own
  way when it resamples itself), done a few classes at a time with a running maximum so 118
  classes never sit at full resolution at once.

Stage names follow TotalSegmentator's progress messages (resample, predict, resample back)
plus the parts it does not name (normalise, accumulate, argmax). Axis order is (z, y, x).
No clock is read here: stages are timed by a ``measure.StageClock`` the caller passes in.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from segbench import volume
from segbench.catalogue import Pipeline
from segbench.pipelines.resample import (
    CT_NORMALISATION,
    argmax_labels,
    labels_back_nearest,
    labels_back_probabilities,
    resample_image,
)
from segbench.pipelines.scan import AIR_HU, CT, padded_plane
from segbench.pipelines.windowing import labels_resized, resize_slices, windowed

Call = Callable[[torch.Tensor], Any]


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))


def slice_batch(hu: np.ndarray, first: int, batch: int,
                windows: Sequence[Sequence[float]] | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
    """Slices first .. first + batch - 1 through the training windows, (batch, 3, y, x); a
    short last batch is padded with copies of its last slice (dropped after the call), and
    slices whose size is not a multiple of the networks' stride are padded with air below and
    to the right (cropped from the labels; a no-op for 512 x 512).

    A user's network's input instead (``Pipeline.windows`` / ``Pipeline.size``): with ``size``
    the slices are resized bilinearly to it (no padding), with ``windows`` each channel is
    windowed to one (centre, width): :mod:`segbench.pipelines.windowing`."""
    from segbench.data.phantom import to_input

    part = hu[first:first + batch]
    if len(part) < batch:
        part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
    (h, w), (ph, pw) = part.shape[1:], padded_plane(part.shape[1:])
    if size is not None:
        part = resize_slices(part, size)
    elif (ph, pw) != (h, w):
        part = np.pad(part, ((0, 0), (0, ph - h), (0, pw - w)), constant_values=AIR_HU)
    return torch.from_numpy(windowed(part, windows) if windows else to_input(part))


def run_2d(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Slice-wise segmentation of ``ct``: uint8 labels of the CT's shape."""
    depth = ct.shape[0]
    labels = np.empty(ct.shape, dtype=np.uint8)
    for first in range(0, depth, pipe.batch):
        real = min(pipe.batch, depth - first)
        with stages.stage("window"):
            x = slice_batch(ct.hu, first, pipe.batch, pipe.windows, pipe.size)
        with stages.stage("predict"):
            out = call(x)
        with stages.stage("argmax"):
            h, w = ct.shape[1:]
            if pipe.size is not None:  # a user's network fed resized slices
                labels[first:first + real] = labels_resized(_logits(out)[:real], (h, w))
            else:
                labels[first:first + real] = _labels_2d(_logits(out)[:real], pipe.path,
                                                        padded_plane((h, w)))[:, :h, :w]
    return labels


def _labels_2d(out: torch.Tensor, path: str, out_hw: Sequence[int]) -> np.ndarray:
    """Labels from a 2D network's output: labels as they are (a ``segbench.labels`` path in
    the graph, e.g. family "fpn-labels": the argmax then ran inside "predict"), full-size
    logits by argmax, low-resolution logits through ``labels.labels_from_logits``."""
    if out.dim() == 3:
        return out.to(torch.uint8).numpy()
    if tuple(out.shape[-2:]) == tuple(out_hw):
        return out.argmax(1).to(torch.uint8).numpy()
    from segbench.labels import labels_from_logits

    return labels_from_logits(out, path, tuple(out_hw)).numpy()


def preprocess_3d(ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Resampled, normalised (z, y, x) float32 grid of a 3D pipeline."""
    grid = pipe.grid(ct.shape, ct.spacing)
    with stages.stage("resample"):
        x = resample_image(ct.hu, grid)
    with stages.stage("normalise"):
        x = CT_NORMALISATION.apply(x)
    return x


def run_3d(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Sliding-window segmentation of ``ct``: uint8 labels of the CT's shape."""
    assert pipe.patch is not None
    x = preprocess_3d(ct, pipe, stages)
    how = dict(mirror=pipe.mirror, accumulate=pipe.accumulate, stages=stages,
               tiles_per_call=pipe.batch, streams=pipe.streams)
    if pipe.memory == "slabs":  # labels slab by slab (back is "nearest": checked by Pipeline)
        labels = volume.sliding_window_labels(call, x[None], pipe.patch, pipe.step,
                                              pipe.classes, **how)
        del x
        with stages.stage("resample back"):
            return labels_back_nearest(labels, ct.shape)
    logits = volume.sliding_window_predict(call, x[None], pipe.patch, pipe.step, pipe.classes,
                                           **how)
    del x
    if pipe.back == "probabilities":
        with stages.stage("resample back"):  # includes the running argmax
            return labels_back_probabilities(logits, ct.shape)
    with stages.stage("argmax"):
        labels = argmax_labels(logits)
    del logits
    with stages.stage("resample back"):
        return labels_back_nearest(labels, ct.shape)


def run(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    return run_2d(call, ct, pipe, stages) if pipe.kind == "2d" else run_3d(call, ct, pipe, stages)
