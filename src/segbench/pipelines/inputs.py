"""What the harness needs from a whole-CT pipeline besides the CT: one network call's example
input (export traces it, the isolated-pass estimate times it) and INT8 calibration inputs, from
a calibration-split phantom, never the evaluated CT.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch

from segbench import volume
from segbench.catalogue import Pipeline
from segbench.pipelines.loop import preprocess_3d, slice_batch
from segbench.pipelines.scan import CT, PHANTOM_ORGANS


def example_pass(ct: CT, pipe: Pipeline) -> torch.Tensor:
    """One network call's input from the CT itself: the middle batch of slices, or the
    centre tile of the preprocessed grid (export traces it; the isolated-pass estimate times
    it)."""
    from segbench.measure import StageClock  # only for the stage names' sake

    if pipe.kind == "2d":
        return slice_batch(ct.hu, max(0, ct.shape[0] // 2 - pipe.batch // 2), pipe.batch,
                           pipe.windows, pipe.size)
    x = preprocess_3d(ct, pipe, StageClock())
    return centre_tile(x, pipe.patch).repeat(pipe.batch, 1, 1, 1, 1)  # tiles per call


def centre_tile(x: np.ndarray, patch: Sequence[int]) -> torch.Tensor:
    pads = volume.padding_to_patch(x.shape, patch)
    x = np.pad(x, pads)
    starts = [(s - p) // 2 for s, p in zip(x.shape, patch)]
    tile = x[tuple(slice(s, s + p) for s, p in zip(starts, patch))]
    return torch.from_numpy(np.ascontiguousarray(tile))[None, None]


def calibration_passes(ct: CT, pipe: Pipeline, count: int, phantom: bool) -> list[np.ndarray]:
    """INT8 calibration inputs: ``count`` network inputs from a calibration-split phantom
    (never the evaluated CT), or from the user's own CT when there is no phantom truth."""
    from segbench.data.phantom import make_volume, split_seed

    if phantom:
        depth = max(16, count * pipe.batch) if pipe.kind == "2d" else ct.shape[0]
        source = make_volume((depth, *ct.shape[1:]), split_seed("calibration", 0),
                             PHANTOM_ORGANS).hu
        ct = CT(source.astype(np.float32), ct.spacing)
    if pipe.kind == "2d":
        firsts = np.linspace(0, max(0, ct.shape[0] - pipe.batch), count).astype(int)
        return [slice_batch(ct.hu, int(f), pipe.batch, pipe.windows, pipe.size).numpy()
                for f in firsts]
    from segbench.measure import StageClock

    assert pipe.patch is not None
    x = np.pad(preprocess_3d(ct, pipe, StageClock()), volume.padding_to_patch(
        pipe.grid(ct.shape, ct.spacing), pipe.patch))
    grid = volume.tile_grid(x.shape, pipe.patch, pipe.step)
    tiles = list(itertools.product(*grid))
    picks = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, count)]
    return [np.ascontiguousarray(np.repeat(  # each input a full call: tiles per call
        x[tuple(slice(s, s + p) for s, p in zip(starts, pipe.patch))][None, None], pipe.batch,
        axis=0)) for starts in picks]

