"""nnU-Net's sliding-window inference, as the whole-CT pipelines run it: tiling, the Gaussian
importance map, the blend into float16 or float32 accumulators, several tiles per network call,
several calls in flight (streams), and a way that emits labels slab by slab with far less
memory. Re-exported by :mod:`segbench.volume`, where the forward-pass counts of the whole-CT
methods live.

Axis order is (z, y, x) everywhere: slices first, as the arrays of nnU-Net and of our inputs.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from segbench.tiling import mirror_axes, tile_grid

SIGMA_SCALE = 1 / 8  # nnU-Net: Gaussian sigma = patch / 8 per axis

# --------------------------------------------------------------------------------------------
# Tiling


def padding_to_patch(image_shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) zero padding per axis that brings the image up to the patch, centred.

    nnU-Net pads this way (``pad_nd_image``) and crops the prediction back afterwards.
    """
    pads = []
    for i, p in zip(image_shape, patch):
        missing = max(p - i, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


# --------------------------------------------------------------------------------------------
# Gaussian importance map


def gaussian_importance_map(patch: Sequence[int], sigma_scale: float = SIGMA_SCALE
                            ) -> torch.Tensor:
    """Per-voxel weight of a tile's prediction: a Gaussian centred on the patch, max 1.

    Predictions near a tile's border see less context and are less reliable, so overlapping
    tiles are blended with more weight at their centres. Unlike nnU-Net, which puts a unit
    impulse at voxel ``patch // 2`` and blurs it (half a voxel off-centre for even sizes), the
    Gaussian is evaluated at voxel centres around the true centre ``(patch - 1) / 2``, so the map
    is exactly mirror-symmetric and mirroring TTA does not skew the blend. Zeros (underflow far
    from the centre) become the smallest nonzero weight, as in nnU-Net, so that no voxel can end
    with a zero weight sum.
    """
    weights = torch.ones((), dtype=torch.float64)
    for axis, size in enumerate(patch):
        coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        profile = torch.exp(-0.5 * (coords / (size * sigma_scale)) ** 2)
        shape = [1] * len(patch)
        shape[axis] = size
        weights = weights * profile.reshape(shape)
    weights = (weights / weights.max()).float()
    nonzero = weights[weights > 0]
    return torch.where(weights > 0, weights, nonzero.min())


# --------------------------------------------------------------------------------------------
# Sliding-window inference


def _as_tensor(out: Any) -> torch.Tensor:
    """A predictor's output as a float32 tensor, whatever the runtime returned."""
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError(f"predict returned {len(out)} outputs; expected one")
        out = out[0]
    if not isinstance(out, torch.Tensor):
        out = torch.from_numpy(np.asarray(out))
    return out.float()


def _predict_tile(predict: Callable[[torch.Tensor], Any], tile: torch.Tensor,
                  expected: tuple[int, ...], mirror: bool) -> torch.Tensor:
    """The mean prediction over the mirrored copies of one (1, C_in, *patch) tile."""
    combos = mirror_axes(tile.dim() - 2, mirror)
    if len(combos) == 1:  # no mirroring: the output itself, no zeroed sum, add or division
        # (each of those is a pass over (1, classes, *patch) float32: 0.75 GB a tile for the
        # 118-class --fast network, as nnU-Net's predictor also skips them)
        out = _as_tensor(predict(tile.contiguous()))
        if tuple(out.shape) != expected:
            raise ValueError(f"predict returned shape {tuple(out.shape)}; expected {expected}")
        return out
    total = torch.zeros(expected, dtype=torch.float32)
    for axes in combos:
        flipped = tile.flip(axes) if axes else tile
        out = _as_tensor(predict(flipped.contiguous()))
        if tuple(out.shape) != expected:
            raise ValueError(f"predict returned shape {tuple(out.shape)}; expected {expected}")
        total += out.flip(axes) if axes else out
    return total / len(combos)


ACCUMULATOR_DTYPES = {"float16": torch.float16, "float32": torch.float32}
WEIGHT_SCALE = 10.0  # nnU-Net scales the Gaussian to a maximum of 10 before casting it


def _accumulator_weights(patch: Sequence[int], use_gaussian: bool, dtype: torch.dtype,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """The tile weights in the accumulator's dtype, no zero among them.

    nnU-Net's predictor scales the Gaussian to a maximum of 10, casts it to the accumulator's
    dtype (half) and then replaces the zeros the cast made (float16 underflows below 6e-8, and
    a 3D Gaussian's corners are far below that) by the smallest nonzero weight, so that no
    voxel's weight sum is 0. The scale cancels in the final division.
    """
    if not use_gaussian:
        return torch.ones(tuple(patch), dtype=dtype)
    if weights is not None:  # a map made elsewhere (nnU-Net's own, for a model folder)
        if tuple(weights.shape) != tuple(patch):
            raise ValueError(f"weights of shape {tuple(weights.shape)}; the patch is "
                             f"{tuple(patch)}")
        weight = weights.to(dtype)
    else:
        weight = (gaussian_importance_map(patch) * WEIGHT_SCALE).to(dtype)
    return torch.where(weight > 0, weight, weight[weight > 0].min())


class _NoStages:
    """Stand-in for measure.StageClock when nobody asked for a breakdown."""

    @staticmethod
    def stage(name: str) -> Any:
        import contextlib

        return contextlib.nullcontext()


def _tile_groups(predict: Callable[[torch.Tensor], Any], x: torch.Tensor,
                 tiles: Sequence[tuple[int, ...]], patch: Sequence[int], num_classes: int,
                 mirror: bool | Sequence[int], tiles_per_call: int, streams: int) -> Any:
    """(tile starts, (k, classes, *patch) float32 predictions) in tile order.

    ``tiles_per_call`` tiles go through the network as one batch (the last batch is filled
    up with copies of its last tile, whose outputs are dropped: exported graphs have a fixed
    batch). ``streams`` > 1 keeps that many calls in flight from as many threads (``predict``
    must then be thread-safe: an OpenVINO model compiled with as many streams, an ONNX
    Runtime session), at most ``streams`` outputs held at once; the results are handed back
    in tile order, so the blend (and so the labels) is the serial one.
    """
    groups = [list(tiles[i:i + tiles_per_call]) for i in range(0, len(tiles), tiles_per_call)]
    expected = (tiles_per_call, num_classes, *patch)

    def run(group: list[tuple[int, ...]]) -> torch.Tensor:
        batch = [x[(slice(None), *(slice(s, s + p) for s, p in zip(starts, patch)))]
                 for starts in group]
        batch += [batch[-1]] * (tiles_per_call - len(batch))
        pred = _predict_tile(predict, torch.stack(batch), expected, mirror)
        return pred[:len(group)]

    if streams <= 1:
        for group in groups:
            yield group, run(group)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(streams, thread_name_prefix="tile-stream") as pool:
        pending: deque = deque()
        for group in groups:
            pending.append((group, pool.submit(run, group)))
            if len(pending) >= streams:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _padded_volume(accumulate: str, volume: Any, patch: Sequence[int], tiles_per_call: int,
                   streams: int) -> tuple[torch.dtype, torch.Tensor, tuple[int, ...], list]:
    """The arguments checked; (accumulator dtype, the volume as float32 zero-padded (centred)
    to at least the patch, its spatial shape before padding, the (before, after) pads)."""
    if accumulate not in ACCUMULATOR_DTYPES:
        raise ValueError(f"accumulate must be one of {', '.join(ACCUMULATOR_DTYPES)}, "
                         f"got {accumulate!r}")
    if tiles_per_call < 1 or streams < 1:
        raise ValueError(f"tiles_per_call and streams must be >= 1, got {tiles_per_call} and "
                         f"{streams}")
    x = torch.as_tensor(volume, dtype=torch.float32)
    if x.dim() != len(patch) + 1:
        raise ValueError(f"volume must be (C_in, *spatial) with {len(patch)} spatial axes, "
                         f"got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[1:])
    pads = padding_to_patch(spatial, patch)
    # F.pad takes (before, after) pairs from the last axis backwards
    x = F.pad(x, [p for pair in reversed(pads) for p in pair])
    return ACCUMULATOR_DTYPES[accumulate], x, spatial, pads


def _timed(outputs: Any, stages: Any) -> Any:
    """The items of :func:`_tile_groups`, the wait for each clocked as stage "predict"."""
    while True:
        with stages.stage("predict"):
            item = next(outputs, None)
        if item is None:
            return
        yield item


class _Blender:
    """Adds weighted tile predictions into the accumulators, nnU-Net's order: weighted in
    float32, then added into the accumulator's dtype (rounded first, or with one rounding when
    ``exact``). ``class_chunk`` weights that many classes at a time, so the float32 (and
    float16) product buffers are a chunk deep instead of all classes (0.75 + 0.38 GB a tile for
    the 118-class --fast network): the same arithmetic per voxel, the same accumulators."""

    def __init__(self, patch: Sequence[int], num_classes: int, dtype: torch.dtype,
                 weight: torch.Tensor, exact: bool, class_chunk: int | None = None):
        self.weight, self.weight_f32, self.exact = weight, weight.float(), exact
        self.dtype = dtype
        self.chunk = min(num_classes, class_chunk or num_classes)
        self.weighted = torch.empty((self.chunk, *patch), dtype=torch.float32)
        self.weighted_acc = (torch.empty_like(self.weighted) if exact else
                             self.weighted if dtype == torch.float32
                             else torch.empty_like(self.weighted, dtype=dtype))

    def add(self, pred: torch.Tensor, logits: torch.Tensor, weight_sum: torch.Tensor,
            window: tuple[slice, ...]) -> None:
        for c0 in range(0, pred.shape[0], self.chunk):
            c1 = min(c0 + self.chunk, pred.shape[0])
            weighted, acc = self.weighted[:c1 - c0], self.weighted_acc[:c1 - c0]
            torch.mul(pred[c0:c1], self.weight_f32, out=weighted)
            target = logits[(slice(c0, c1), *window)]
            if self.exact:  # float32 sum, one rounding into float16
                acc.copy_(target)
                acc += weighted
                target.copy_(acc)
            else:  # rounded to the accumulator's dtype, then added
                acc.copy_(weighted)
                target += acc
        weight_sum[window] += self.weight


def sliding_window_predict(predict: Callable[[torch.Tensor], Any],
                           volume: torch.Tensor | np.ndarray,
                           patch: Sequence[int], step: float, num_classes: int,
                           mirror: bool | Sequence[int] = False, use_gaussian: bool = True,
                           accumulate: str = "float16", stages: Any = None,
                           weights: torch.Tensor | None = None, round_once: bool = False,
                           tiles_per_call: int = 1, streams: int = 1) -> torch.Tensor:
    """nnU-Net's sliding-window inference of ``volume`` (C_in, *spatial) -> (classes, *spatial).

    ``predict`` maps a float32 (k, C_in, *patch) tensor to (k, num_classes, *patch) logits
    (a tensor, an array, or a one-element list of either: a runtime's native output), k =
    ``tiles_per_call``. The volume is zero-padded (centred) to at least the patch, tiled with
    :func:`tile_grid`, every tile predicted (2^dims times with mirroring), the predictions
    accumulated with the Gaussian (or uniform) weights and divided by the accumulated weights,
    then the padding is cropped. ``predict`` is called ``ceil(tile_count(...) / k) *
    len(mirror_axes(dims, mirror))`` times; ``streams`` > 1 keeps that many calls in flight
    (see :func:`_tile_groups`; the result is the serial one).

    ``accumulate`` is the dtype of the logit and weight accumulators: "float16" as nnU-Net's
    predictor allocates them (half the memory of float32 over a grid of up to 118 classes;
    the result is float16 too), or "float32". ``stages`` (a ``measure.StageClock``) splits the
    time into "predict" (the network calls, mirroring included; with streams, the wait for the
    next tile's output) and "accumulate" (weighting, adding into the accumulators, the final
    division). ``mirror`` True mirrors over every spatial axis, a sequence over those axes only
    (0-based). ``weights``: the importance map to use instead of this module's Gaussian
    (nnU-Net's own for a model folder's pipeline). ``round_once``: a float16 accumulator takes
    each weighted tile with one rounding, as nnU-Net's predictor adds its float32 product into
    its half buffer (bit-identical accumulators; the default rounds the product to float16
    first, which differs in the last bit now and then and costs about half as much: PyTorch's
    in-place add of float32 into float16 takes a slow path, many times a same-dtype add, so one
    rounding is done through a float32 buffer).
    """
    dtype, x, spatial, pads = _padded_volume(accumulate, volume, patch, tiles_per_call, streams)
    stages = stages or _NoStages()
    padded = tuple(x.shape[1:])

    blend = _Blender(patch, num_classes, dtype,
                     _accumulator_weights(patch, use_gaussian, dtype, weights),
                     round_once and dtype != torch.float32)
    logits = torch.zeros((num_classes, *padded), dtype=dtype)
    weight_sum = torch.zeros(padded, dtype=dtype)
    tiles = list(itertools.product(*tile_grid(padded, patch, step)))
    outputs = _tile_groups(predict, x, tiles, patch, num_classes, mirror, tiles_per_call,
                           streams)
    for group, pred in _timed(outputs, stages):
        with stages.stage("accumulate"):
            for starts, one in zip(group, pred):
                window = tuple(slice(s, s + p) for s, p in zip(starts, patch))
                blend.add(one, logits, weight_sum, window)
    with stages.stage("accumulate"):
        logits /= weight_sum
    crop = tuple(slice(before, before + size) for (before, _), size in zip(pads, spatial))
    return logits[(slice(None), *crop)]


def sliding_window_labels(predict: Callable[[torch.Tensor], Any],
                          volume: torch.Tensor | np.ndarray,
                          patch: Sequence[int], step: float, num_classes: int,
                          mirror: bool | Sequence[int] = False, use_gaussian: bool = True,
                          accumulate: str = "float16", stages: Any = None,
                          tiles_per_call: int = 1, streams: int = 1,
                          class_chunk: int = 8, weights: torch.Tensor | None = None
                          ) -> np.ndarray:
    """The labels of :func:`sliding_window_predict` + argmax with far less memory: uint8
    labels of the volume's spatial shape, identical to the argmax of its logits.

    The accumulators hold one slab of tiles (the patch's depth along the first axis) instead
    of the whole grid: tiles go in the same order (first axis outermost), and once every tile
    starting at one depth is in, the rows no later tile reaches are final: divided, turned into
    labels and dropped, the rest shifted to the front. The weighted products are made
    ``class_chunk`` classes at a time (see :class:`_Blender`). What it saves: the accumulators
    beyond one slab, the full-grid float logits the argmax reads, and all but a chunk of the two
    product buffers; what it costs: the shift of the overlap per slab and argmax in slabs.
    Stages: "predict", "accumulate" (blend, shift), "argmax" (division and labels per slab).
    ``weights``: another importance map, as for :func:`sliding_window_predict` (the products
    are rounded to the accumulator's dtype, then added: its default, not ``round_once``).
    """
    from segbench.pipelines.resample import argmax_labels

    dtype, x, spatial, pads = _padded_volume(accumulate, volume, patch, tiles_per_call, streams)
    stages = stages or _NoStages()
    padded = tuple(x.shape[1:])
    blend = _Blender(patch, num_classes, dtype,
                     _accumulator_weights(patch, use_gaussian, dtype, weights), False,
                     class_chunk)
    depth = patch[0]
    logits = torch.zeros((num_classes, depth, *padded[1:]), dtype=dtype)
    weight_sum = torch.zeros((depth, *padded[1:]), dtype=dtype)
    labels = np.empty(spatial, dtype=np.uint8)
    grid = tile_grid(padded, patch, step)
    tiles = list(itertools.product(*grid))
    firsts = grid[0] + [padded[0]]  # slab starts, then the end
    origin, slab = 0, 0  # the grid row the buffers' row 0 holds; the slab being filled

    def finish(until: int) -> None:
        """Rows [origin, until) are final: labels out, the rest of the slab to the front."""
        nonlocal origin
        n = until - origin
        with stages.stage("argmax"):
            logits[:, :n] /= weight_sum[:n]
            rows = argmax_labels(logits[:, :n])
            lo, hi = max(origin, pads[0][0]), min(until, pads[0][0] + spatial[0])
            if hi > lo:
                inner = tuple(slice(b, b + s) for (b, _), s in zip(pads[1:], spatial[1:]))
                labels[lo - pads[0][0]:hi - pads[0][0]] = rows[(slice(lo - origin, hi - origin),
                                                                *inner)]
        with stages.stage("accumulate"):
            keep = depth - n
            if keep > 0:
                logits[:, :keep] = logits[:, n:].clone()
                weight_sum[:keep] = weight_sum[n:].clone()
            logits[:, keep:] = 0
            weight_sum[keep:] = 0
        origin = until

    outputs = _tile_groups(predict, x, tiles, patch, num_classes, mirror, tiles_per_call,
                           streams)
    for group, pred in _timed(outputs, stages):
        for starts, one in zip(group, pred):
            while starts[0] != firsts[slab]:  # a new slab starts: the rows before it are final
                slab += 1
                finish(firsts[slab])
            with stages.stage("accumulate"):
                window = (slice(starts[0] - origin, starts[0] - origin + depth),
                          *(slice(s, s + p) for s, p in zip(starts[1:], patch[1:])))
                blend.add(one, logits, weight_sum, window)
    finish(padded[0])
    return labels


def low_memory_bytes(grid: Sequence[int], patch: Sequence[int], num_classes: int,
                     accumulate: str = "float16", class_chunk: int = 8,
                     tiles_per_call: int = 1, streams: int = 1) -> dict[str, int]:
    """What :func:`sliding_window_predict` + argmax and :func:`sliding_window_labels` hold in
    their buffers (bytes, the network's own activations not included): {"full": ...,
    "slabs": ...}. Each holds the tile outputs in flight (float32, k tiles a call, one per
    stream) and the input grid; the full way the whole grid's accumulators and two
    all-class product buffers, the slab way one slab of accumulators, chunk-deep buffers and
    the uint8 labels."""
    import math

    size = ACCUMULATOR_DTYPES[accumulate].itemsize
    padded = [max(g, p) for g, p in zip(grid, patch)]
    tile = math.prod(patch)
    common = 4 * num_classes * tile * tiles_per_call * max(1, streams) + 4 * math.prod(padded)
    full = (common + size * (num_classes + 1) * math.prod(padded)
            + (4 + size) * num_classes * tile)
    slab_cells = patch[0] * math.prod(padded[1:])
    chunk = min(num_classes, class_chunk)
    slabs = (common + size * (num_classes + 1) * slab_cells + (4 + size) * chunk * tile
             + math.prod(padded))
    return {"full": int(full), "slabs": int(slabs)}
