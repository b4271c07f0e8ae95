"""Sliding-window tiling, blending and the forward-pass counts of the whole-CT methods."""

import numpy as np
import pytest
import torch

from segbench import volume
from segbench.volume import (
    METHODS_3D,
    PRESETS,
    forward_passes,
    gaussian_importance_map,
    resampled_shape,
    sliding_window_predict,
    tile_count,
    tile_starts,
)

CT_280 = PRESETS["ct-512x512x280"]
CT_458 = PRESETS["ct-512x512x458"]


# --- tiling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("image, patch, step, starts", [
    (128, 128, 0.5, [0]),  # image = patch: one tile
    (50, 128, 0.5, [0]),  # smaller than the patch: padded, one tile
    (160, 64, 0.5, [0, 32, 64, 96]),  # (160-64)/32 = 3 exactly: 4 tiles, 32 apart
    (100, 64, 0.5, [0, 18, 36]),  # ceil(36/32)+1 = 3 tiles over a span of 36
    (101, 64, 0.5, [0, 18, 37]),  # 18.5 rounds half to even, as np.round does
    (266, 128, 0.8, [0, 69, 138]),  # ceil(138/102.4)+1 = 3
    (133, 128, 0.8, [0, 5]),  # 5 voxels past the patch still cost a second tile
])
def test_tile_starts_by_hand(image, patch, step, starts):
    assert tile_starts(image, patch, step) == starts


def test_tile_count_is_the_product_over_axes():
    assert tile_count((128, 128, 128), (128, 128, 128), 0.5) == 1
    assert tile_count((160, 100, 50), (64, 64, 64), 0.5) == 4 * 3 * 1


def test_step_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="step"):
        tile_starts(200, 64, 0.0)
    with pytest.raises(ValueError, match="step"):
        tile_starts(200, 64, 1.5)


# --- Gaussian importance map ----------------------------------------------------------------

@pytest.mark.parametrize("patch", [(5, 8, 7), (16, 16, 16), (9, 12)])
def test_gaussian_is_symmetric_and_peaks_at_the_centre(patch):
    g = gaussian_importance_map(patch)
    assert g.shape == patch
    assert g.dtype == torch.float32
    for axis in range(len(patch)):
        assert torch.equal(g, g.flip(axis))
    assert g.max() == 1.0
    # the central voxel(s): one for odd sizes, the two middle ones for even sizes
    centre = tuple(slice((p - 1) // 2, p // 2 + 1) for p in patch)
    assert (g[centre] == g.max()).all()
    assert (g > 0).all()


def test_gaussian_zeros_become_the_smallest_nonzero_weight():
    # a very narrow Gaussian underflows to 0 in float32 far from the centre
    g = gaussian_importance_map((64, 64), sigma_scale=0.01)
    assert (g > 0).all()
    assert (g == g.min()).sum() > 1


# --- sliding-window inference ---------------------------------------------------------------

def repeat_as_classes(classes):
    """An "identity network": every class's logit is the input, so blending must give it back."""
    def predict(tile):
        assert tile.dtype == torch.float32
        return tile.repeat(1, classes, *([1] * (tile.dim() - 2)))
    return predict


@pytest.mark.parametrize("use_gaussian", [True, False])
@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("shape, patch", [
    ((20, 19, 24), (8, 8, 8)),  # many overlapping tiles
    ((6, 19, 10), (8, 8, 8)),  # smaller than the patch on two axes: padded and cropped back
    ((8, 8, 8), (8, 8, 8)),  # exactly one tile
])
def test_identity_network_is_reassembled(shape, patch, mirror, use_gaussian):
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    out = sliding_window_predict(repeat_as_classes(2), x, patch, 0.5, 2, mirror=mirror,
                                 use_gaussian=use_gaussian, accumulate="float32")
    assert out.shape == (2, *shape)
    torch.testing.assert_close(out, x.expand(2, *shape), rtol=1e-6, atol=1e-6)


def test_tiles_land_where_they_were_cut():
    # a location-dependent input tells a misplaced or unflipped tile apart from a right one
    shape, patch = (12, 10, 9), (4, 4, 4)
    z, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape),
                             indexing="ij")
    vol = (100 * z + 10 * y + x)[None]
    out = sliding_window_predict(repeat_as_classes(1), vol, patch, 0.5, 1, mirror=True,
                                 accumulate="float32")
    torch.testing.assert_close(out, vol, rtol=1e-6, atol=1e-3)


def test_predict_calls_are_tiles_times_mirrored_copies():
    calls = []

    def predict(tile):
        calls.append(tuple(tile.shape))
        return tile

    shape, patch = (20, 19, 24), (8, 8, 8)
    vol = np.zeros((1, *shape), dtype=np.float32)  # numpy in, like a loaded CT
    sliding_window_predict(predict, vol, patch, 0.5, 1, mirror=True)
    assert len(calls) == tile_count(shape, patch, 0.5) * 8
    assert set(calls) == {(1, 1, 8, 8, 8)}


def test_runtime_style_outputs_are_accepted():
    # ORT and OpenVINO return numpy arrays, sometimes in a one-element list
    x = torch.randn(1, 10, 10, 10)
    out = sliding_window_predict(lambda t: [t.numpy().copy()], x, (8, 8, 8), 0.5, 1,
                                 accumulate="float32")
    torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-6)


def test_wrong_output_shape_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        sliding_window_predict(lambda t: t, torch.zeros(1, 8, 8, 8), (8, 8, 8), 0.5, 3)


# --- float16 accumulation (nnU-Net's predictor) ---------------------------------------------

def random_network(classes):
    """A fixed random 3D conv: logits of a realistic spread, different per class."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, classes, 3, padding=1)

    def predict(tile):
        with torch.no_grad():
            return conv(tile) * 5
    return predict


@pytest.mark.parametrize("shape, patch", [((20, 19, 24), (8, 8, 8)), ((6, 19, 10), (8, 8, 8))])
def test_float16_accumulator_matches_float32(shape, patch):
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    predict = random_network(4)
    half = sliding_window_predict(predict, x, patch, 0.5, 4, accumulate="float16")
    full = sliding_window_predict(predict, x, patch, 0.5, 4, accumulate="float32")
    assert half.dtype == torch.float16 and full.dtype == torch.float32
    assert torch.isfinite(half).all()  # no zero weight sum at the Gaussian's far corners
    # float16 keeps ~3 decimal digits: logits of magnitude ~10 agree to ~1e-2, except at the
    # volume's far corners, which only a Gaussian's subnormal tail covers (few mantissa bits;
    # nnU-Net's predictor has the same corners)
    close = ((half.float() - full).abs() <= 2e-2 + 5e-3 * full.abs()).float().mean()
    assert close > 0.995
    assert (half.float() - full).abs().max() < 0.5
    agree = (half.float().argmax(0) == full.argmax(0)).float().mean()
    assert agree > 0.99


def test_unknown_accumulator_dtype_is_refused():
    with pytest.raises(ValueError, match="accumulate"):
        sliding_window_predict(lambda t: t, torch.zeros(1, 8, 8, 8), (8, 8, 8), 0.5, 1,
                               accumulate="bfloat16")


def test_stage_clock_splits_predict_and_accumulate():
    from segbench.measure import StageClock

    ticks = iter(range(1000))
    clock = StageClock(clock=lambda: float(next(ticks)))
    sliding_window_predict(lambda t: t, torch.zeros(1, 12, 8, 8), (8, 8, 8), 0.5, 1,
                           stages=clock)
    assert set(clock.seconds) == {"predict", "accumulate"}
    assert all(v > 0 for v in clock.seconds.values())


def test_mirroring_means_eight_passes_in_3d_and_four_in_2d():
    assert len(volume.mirror_axes(3, True)) == 8
    assert len(volume.mirror_axes(2, True)) == 4
    assert volume.mirror_axes(3, False) == [()]


# --- presets and whole-CT methods -----------------------------------------------------------

def test_presets_resampled_to_the_networks_grids():
    # 512 x 0.78 / 1.5 = 266.24 -> 266; 512 x 0.78 / 3 = 133.12 -> 133
    assert resampled_shape(CT_280, 1.5) == (280, 266, 266)
    assert resampled_shape(CT_280, 3.0) == (140, 133, 133)
    assert resampled_shape(CT_458, 1.5) == (458, 266, 266)
    assert resampled_shape(CT_458, 3.0) == (229, 133, 133)


def by_name(name):
    return {m.name: m for m in (*METHODS_3D, volume.slice_wise("resnet18+unet"))}[name]


@pytest.mark.parametrize("name, preset, per_network, total", [
    # 1.5 mm grid 280x266x266, patch 128, step 0.8 (102.4 voxels): 3x3x3 tiles, 5 networks
    ("TotalSegmentator", CT_280, 27, 135),
    # 458 slices: ceil(330/102.4)+1 = 5 along z
    ("TotalSegmentator", CT_458, 45, 225),
    # 3 mm grid 140x133x133, patch 112x112x128, step 0.8: 2x2x2
    ("TotalSegmentator --fast", CT_280, 8, 8),
    ("TotalSegmentator --fast", CT_458, 12, 12),  # 229 slices: ceil(117/89.6)+1 = 3
    # step 0.5 (64 voxels): ceil(152/64)+1 = 4 along z, ceil(138/64)+1 = 4 in-plane; x8 mirrored
    ("nnU-Net defaults", CT_280, 64, 512),
    ("nnU-Net defaults", CT_458, 112, 896),  # ceil(330/64)+1 = 7 along z
    ("STU-Net-S", CT_280, 64, 64),
    ("STU-Net-B", CT_458, 112, 112),
    # one 512x512 forward per axial slice
    ("2D slice-wise (resnet18+unet)", CT_280, 280, 280),
    ("2D slice-wise (resnet18+unet)", CT_458, 458, 458),
])
def test_forward_passes_by_hand(name, preset, per_network, total):
    assert forward_passes(by_name(name), preset) == (per_network, total)


def test_3d_methods_name_real_networks():
    from segbench.models.nets3d import FAMILIES

    nets = FAMILIES["3d"]
    for method in METHODS_3D:
        info = nets.describe(method.network, 2)
        assert list(method.patch) == info["patch"]
        assert method.spacing_mm == info["spacing_mm"]


# --- tiles per call, streams, labels per slab ------------------------------------------------

def _small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 5, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv3d(5, 5, 3, padding=1)).eval()

    def predict(t):
        with torch.no_grad():
            return net(t)

    return predict


def _pointwise(t):
    """Per voxel, so a batch of tiles gives each tile's output bit for bit."""
    return torch.cat([t, -t, t * t, t.sin()], dim=1)


@pytest.mark.parametrize("shape, patch, step", [
    ((1, 37, 29, 23), (16, 16, 8), 0.5),  # several slabs, uneven overlaps
    ((1, 10, 12, 9), (16, 16, 8), 0.5),  # smaller than the patch on two axes: padded
    ((1, 40, 32, 16), (16, 16, 8), 1.0),  # step 1.0 on a multiple of the patch
])
@pytest.mark.parametrize("accumulate", ["float16", "float32"])
def test_labels_per_slab_equal_the_argmax_of_the_whole_grid(shape, patch, step, accumulate):
    from segbench.pipelines.resample import argmax_labels

    predict, x = _small_net(), torch.randn(shape)
    whole = argmax_labels(sliding_window_predict(predict, x, patch, step, 5,
                                                 accumulate=accumulate))
    for chunk in (1, 2, 8):
        got = volume.sliding_window_labels(predict, x, patch, step, 5, accumulate=accumulate,
                                           class_chunk=chunk)
        assert got.dtype == np.uint8 and got.shape == shape[1:]
        np.testing.assert_array_equal(got, whole)


@pytest.mark.parametrize("tiles_per_call, streams", [(3, 1), (1, 2), (2, 3), (8, 1)])
def test_tiles_per_call_and_streams_keep_the_blend(tiles_per_call, streams):
    x = torch.randn(1, 37, 29, 23)
    calls = []

    def predict(t):
        calls.append(t.shape[0])
        return _pointwise(t)

    whole = sliding_window_predict(_pointwise, x, (16, 16, 8), 0.5, 4)
    got = sliding_window_predict(predict, x, (16, 16, 8), 0.5, 4,
                                 tiles_per_call=tiles_per_call, streams=streams)
    assert torch.equal(got, whole)
    tiles = tile_count((37, 29, 23), (16, 16, 8), 0.5)
    assert len(calls) == -(-tiles // tiles_per_call)  # a full batch every call: fixed shapes
    assert set(calls) == {tiles_per_call}
    labels = volume.sliding_window_labels(predict, x, (16, 16, 8), 0.5, 4,
                                          tiles_per_call=tiles_per_call, streams=streams)
    from segbench.pipelines.resample import argmax_labels

    np.testing.assert_array_equal(labels, argmax_labels(whole))


def test_streams_keep_calls_in_flight_and_hold_at_most_that_many():
    import threading
    import time

    inside, most, lock = [0], [0], threading.Lock()

    def predict(t):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        return _pointwise(t)

    sliding_window_predict(predict, torch.randn(1, 37, 29, 23), (16, 16, 8), 0.5, 4, streams=2)
    assert most[0] == 2


def test_bad_tiles_per_call_or_streams_are_refused():
    with pytest.raises(ValueError, match="tiles_per_call and streams"):
        sliding_window_predict(_pointwise, torch.zeros(1, 8, 8, 8), (8, 8, 8), 0.5, 4,
                               streams=0)


def test_the_slab_way_holds_less_than_the_whole_grid():
    need = volume.low_memory_bytes((229, 133, 133), (112, 112, 128), 118)
    assert need["slabs"] < 0.7 * need["full"]
