"""own_model: a user's nnU-Net v2 model folder as a whole-CT pipeline, and a cohort of CTs.

The faithfulness tests need nnU-Net (the ``peers`` group; CI runs this file with it); the
folder checks, the cohort's overlap and the sliding-window pieces do not.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.catalogue import PlainUNetConfig
from segbench.cli import UsageError
from segbench.models.nets3d import build_plain_unet
from segbench.ownnet import nnunet_folder as nf

try:
    import nnunetv2  # noqa: F401

    HAVE_NNUNET = True
except ImportError:
    HAVE_NNUNET = False
needs_nnunet = pytest.mark.skipif(not HAVE_NNUNET,
                                  reason="nnU-Net not installed (uv sync --group peers)")
TINY = PlainUNetConfig(features=(4, 8), strides=(1, 2), patch=(16, 16, 16), spacing_mm=2.0,
                       display="tiny")


def plans(spacing: float = 2.0) -> dict:
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet."
                                  "PlainConvUNet",
            "arch_kwargs": {"n_stages": 2, "features_per_stage": [4, 8],
                            "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]],
                            "n_conv_per_stage": [2, 2], "n_conv_per_stage_decoder": [2],
                            "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                            "dropout_op": None, "dropout_op_kwargs": None,
                            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    resampling = {"resampling_fn_data": "resample_data_or_seg_to_shape",
                  "resampling_fn_seg": "resample_data_or_seg_to_shape",
                  "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                  "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                                "force_separate_z": None},
                  "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                               "force_separate_z": None},
                  "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1,
                                                         "order_z": 0,
                                                         "force_separate_z": None}}
    return {"dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": [spacing] * 3,
            "original_median_shape_after_transp": [16, 16, 16],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": {
                "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2, "patch_size": [16, 16, 16],
                "median_image_size_in_voxels": [16, 16, 16], "spacing": [spacing] * 3,
                "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
                **resampling, "architecture": arch, "batch_dice": False}},
            "experiment_planner_used": "test", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {"0": {
                "max": 3000.0, "mean": 40.0, "median": 45.0, "min": -1024.0,
                "percentile_00_5": -1000.0, "percentile_99_5": 1500.0, "std": 350.0}}}


def write_folder(root: Path, classes: int = 3, mirror=None, spacing: float = 2.0) -> Path:
    """A tiny nnU-Net v2 model folder with random weights, as nnU-Net lays one out."""
    folder = root / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans(spacing)))
    labels = {"background": 0, **{f"organ{i}": i for i in range(1, classes)}}
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": labels, "numTraining": 0,
        "file_ending": ".nii.gz"}))
    torch.manual_seed(0)
    net = build_plain_unet(TINY, classes)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"},
                "inference_allowed_mirroring_axes": mirror},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def tiny_ct(seed: int = 0):
    from segbench.pipelines.scan import CT

    rng = np.random.default_rng(seed)
    hu = rng.normal(0, 300, (20, 24, 24)).astype(np.float32)
    hu[:, :3] = -1000.0  # some air
    return CT(hu, (2.5, 1.5, 1.5))


# --------------------------------------------------------------------------------------------
# The folder: read, build, refuse


def test_read_folder_and_build(tmp_path):
    folder = nf.read_folder(write_folder(tmp_path, classes=4, mirror=(0, 1, 2)))
    assert folder.configuration == "3d_fullres" and folder.fold == "0"
    assert folder.classes == 4 and folder.patch == (16, 16, 16)
    assert folder.mirror_axes == (0, 1, 2)
    net = nf.build_network(folder)
    state = torch.load(folder.checkpoint, weights_only=True)["network_weights"]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 4, 16, 16, 16)


@pytest.mark.parametrize("breakage, message", [
    ("no_plans", "plans.json: missing"),
    ("no_checkpoint", "fold_0: missing"),
    ("not_state_dict", "not an nnU-Net checkpoint"),
    ("pickled_code", "weights_only=True"),
    ("unknown_architecture", "unknown architecture"),
    ("regions", "region-based"),
    ("two_channels", "2 input channels"),
    ("wrong_weights", "weights do not fit"),
])
def test_bad_model_folders_are_one_line_usage_errors(tmp_path, breakage, message):
    folder = write_folder(tmp_path)
    ckpt = folder / "fold_0" / "checkpoint_final.pth"
    if breakage == "no_plans":
        (folder / "plans.json").unlink()
    elif breakage == "no_checkpoint":
        ckpt.unlink()
        (folder / "fold_0").rmdir()
    elif breakage == "not_state_dict":
        torch.save({"weights": [1, 2, 3]}, ckpt)
    elif breakage == "pickled_code":
        torch.save({"network_weights": {"w": torch.zeros(1)}, "obj": threading.Lock}, ckpt)
    elif breakage == "unknown_architecture":
        p = json.loads((folder / "plans.json").read_text())
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "no.Such"
        (folder / "plans.json").write_text(json.dumps(p))
    elif breakage == "regions":
        d = json.loads((folder / "dataset.json").read_text())
        d["regions_class_order"] = [1, 2]
        (folder / "dataset.json").write_text(json.dumps(d))
    elif breakage == "two_channels":
        d = json.loads((folder / "dataset.json").read_text())
        d["channel_names"] = {"0": "CT", "1": "PET"}
        (folder / "dataset.json").write_text(json.dumps(d))
    elif breakage == "wrong_weights":
        torch.save({"network_weights": build_plain_unet(TINY, 5).state_dict(),
                    "init_args": {"configuration": "3d_fullres"}}, ckpt)
    with pytest.raises(UsageError) as err:
        nf.build_network(nf.read_folder(folder))
    text = str(err.value)
    assert message in text and "\n" not in text
    assert str(folder) in text


def test_own_model_script_refuses_bad_input_with_exit_2(tmp_path, capsys):
    from segbench.bench import load_script

    bench = load_script(Path(__file__).parents[1] / "benchmarks/own_model/benchmark.py")
    from segbench.bench import main

    assert main(bench, ["--dry-run"]) == 2  # no model folder
    assert "--nnunet-model" in capsys.readouterr().err
    empty = tmp_path / "cts"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert main(bench, ["--dry-run", "--nnunet-model", str(tmp_path), "--input",
                        str(empty)]) == 2
    assert "no NIfTI files" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The sliding window's nnU-Net mode


def test_mirror_axes_of_a_checkpoint():
    from segbench.tiling import mirror_axes

    assert mirror_axes(3, False) == [()]
    assert len(mirror_axes(3, True)) == 8
    assert mirror_axes(3, (0, 2)) == [(), (2,), (4,), (2, 4)]


def test_round_once_accumulates_as_nnunets_predictor():
    """nnU-Net adds its float32 weighted tile into a float16 buffer in place (one rounding);
    ``round_once`` must give those very accumulators, bit for bit."""
    import itertools

    from segbench.tiling import tile_grid
    from segbench.volume import _accumulator_weights, sliding_window_predict

    torch.manual_seed(0)
    x = torch.randn(1, 20, 20, 20)

    def predict(t):
        return torch.cat([t * 3.3333, -t * 1.7777], 1)

    patch = (16, 16, 16)
    ours = sliding_window_predict(predict, x, patch, 0.5, 2, round_once=True)
    weight = _accumulator_weights(patch, True, torch.float16)
    logits = torch.zeros((2, 20, 20, 20), dtype=torch.float16)
    count = torch.zeros((20, 20, 20), dtype=torch.float16)
    for starts in itertools.product(*tile_grid((20, 20, 20), patch, 0.5)):
        sl = tuple(slice(s, s + p) for s, p in zip(starts, patch))
        pred = predict(x[(slice(None), *sl)][None])[0]
        pred *= weight
        logits[(slice(None), *sl)] += pred  # nnU-Net's line: float32 into float16, in place
        count[sl] += weight
    logits /= count
    assert torch.equal(ours, logits)
    rounded_twice = sliding_window_predict(predict, x, patch, 0.5, 2)
    assert torch.allclose(rounded_twice.float(), ours.float(), rtol=1e-2, atol=1e-2)


@needs_nnunet
def test_tile_starts_are_nnunets():
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    from segbench.tiling import tile_grid

    for shape, step in (((57, 40, 33), 0.5), ((112, 200, 128), 0.8), ((16, 17, 90), 1.0)):
        patch = (16, 16, 16)
        ours = tile_grid(shape, patch, step)
        assert [list(a) for a in ours] == [list(map(int, a)) for a in
                                          compute_steps_for_sliding_window(shape, patch, step)]


# --------------------------------------------------------------------------------------------
# Faithfulness to nnU-Net's own predictor


@needs_nnunet
@pytest.mark.parametrize("mirror", [None, (0, 1, 2)])
@pytest.mark.parametrize("back", ["nnunet", "chunked"])
def test_loop_labels_identical_to_nnunet_predictor(tmp_path, mirror, back):
    from segbench.measure import StageClock
    from segbench.pipelines import nnunet

    folder = nf.read_folder(write_folder(tmp_path, classes=4, mirror=mirror))
    net = nf.build_network(folder)
    ct = tiny_ct()
    ref = nnunet.run(None, ct, nnunet.NnunetPipeline.of_folder(folder, predictor=True),
                     StageClock())
    pipe = nnunet.NnunetPipeline.of_folder(folder, back=back)
    stages = StageClock()
    with torch.no_grad():
        ours = nnunet.run(net, ct, pipe, stages)
    assert ours.shape == ct.shape == ref.shape
    assert len(np.unique(ref)) > 1  # the comparison is not of two empty maps
    if back == "nnunet":
        assert np.array_equal(ours, ref)
    else:  # trilinear against nnU-Net's order-1 resize of the class maps: nearly every voxel
        assert (ours == ref).mean() > 0.99
    assert {"preprocess", "predict", "accumulate", "resample back"} <= set(stages.seconds)
    assert pipe.passes(ct.shape, ct.spacing) > 1


@needs_nnunet
def test_calibration_tiles_come_from_the_given_ct(tmp_path):
    from segbench.pipelines import nnunet

    folder = nf.read_folder(write_folder(tmp_path))
    pipe = nnunet.NnunetPipeline.of_folder(folder)
    ct = tiny_ct()
    data, _ = nnunet.preprocess(ct, pipe)
    tiles = nnunet.calibration_passes(ct, pipe, 3)
    assert len(tiles) == 3 and tiles[0].shape == (1, 1, 16, 16, 16)
    values = set(np.round(data.ravel(), 4))
    assert set(np.round(tiles[1].ravel(), 4)) <= values | {0.0}


# --------------------------------------------------------------------------------------------
# The cohort


def test_cohort_overlaps_reading_with_the_network():
    """With a reader and a network that each take 0.2 s, three CTs take ~1.2 s one after
    another and ~0.8 s overlapped: the reader of CT i+1 runs while CT i is in the network."""
    from segbench.pipelines import cohort

    events = []
    lock = threading.Lock()

    def slow_load(path):
        with lock:
            events.append(("load start", path))
        time.sleep(0.2)
        with lock:
            events.append(("load end", path))
        return path

    def consume(overlap):
        events.clear()
        for path in cohort.inputs(["a", "b", "c"], slow_load, overlap):
            with lock:
                events.append(("work start", path))
            time.sleep(0.2)
            with lock:
                events.append(("work end", path))
        return list(events)

    serial = consume(False)
    assert serial.index(("load start", "b")) > serial.index(("work end", "a"))
    overlapped = consume(True)
    # b's reading started before a's network finished: the overlap, not a timing
    assert overlapped.index(("load start", "b")) < overlapped.index(("work end", "a"))
    assert [e for e in overlapped if e[0] == "work start"] == [
        ("work start", p) for p in "abc"]


def test_cohort_input_folder_checks(tmp_path):
    import argparse

    from segbench.benchmarks.own_model.plan import input_argument

    folder = tmp_path / "cts"
    folder.mkdir()
    with pytest.raises(argparse.ArgumentTypeError, match="no NIfTI files"):
        input_argument(str(folder))
    (folder / "a.nii.gz").write_bytes(b"not a nifti")
    (folder / "readme.txt").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="not only NIfTI"):
        input_argument(str(folder))
    (folder / "readme.txt").unlink()
    with pytest.raises(argparse.ArgumentTypeError, match="a.nii.gz"):
        input_argument(str(folder))


def test_cohort_view_rates():
    from segbench.benchmarks.own_model import view
    from segbench.results import Record

    r = Record(benchmark="own_model", key="k", model="m", runtime="openvino-fp32", shape=[],
               batch=1, threads=2, extra={"method": "cohort", "cts": 5, "median_ct_s": 10.0,
                                          "p90_ct_s": 12.0, "cts_per_hour": 360.0,
                                          "title": "cohort"})
    rows = view.cohort_rows([r])
    assert rows[0][5] == "360" and rows[0][6] == "2.8"  # 1000 / 360 machine-hours
    assert "360 CTs per hour" in " ".join(view.headline([r]))


# --------------------------------------------------------------------------------------------
# The memory budget


def test_memory_budget_refuses_a_pipeline_over_its_estimate_and_the_worker_skips_it(tmp_path):
    from types import SimpleNamespace

    from segbench.benchmarks.own_model import plan
    from segbench.cell import Cell
    from segbench.measure import Protocol
    from segbench.pipelines.nnunet import NnunetPipeline
    from segbench.worker import run_cell

    folder = nf.read_folder(write_folder(tmp_path, classes=4))
    spec = plan.spec_of(folder)
    shape, spacing = (40, 64, 64), (2.5, 1.5, 1.5)
    export = NnunetPipeline.of_folder(folder, back="nnunet")
    chunked = NnunetPipeline.of_folder(folder, back="chunked")
    # nnU-Net's export holds every class map on the CT's grid; the chunked way back four
    assert export.scenario_bytes(shape, spacing) > chunked.scenario_bytes(shape, spacing)
    roomy = SimpleNamespace(extra={"memory_budget": 100.0})
    estimate, why = plan.budget_check(export, spec, shape, spacing, roomy)
    assert estimate > 0 and why == ""
    tight = SimpleNamespace(extra={"memory_budget": estimate / 2**30 / 2})
    _, why = plan.budget_check(export, spec, shape, spacing, tight)
    assert "exceeds the --memory-budget" in why and "GiB" in why
    cell = Cell(benchmark="own_model", model=spec, runtime="eager", shape=(1, 1, 16, 16, 16),
                threads=1, protocol=Protocol(warmup_calls=0, warmup_seconds=0.0, repeats=1,
                                             repeat_seconds=0.0, repeat_calls=1, quick=True),
                fidelity=False, extra={"method": "loop", "budget_refused": why})
    record = run_cell(cell)
    assert record.status == "skipped" and record.reason == why


# --------------------------------------------------------------------------------------------
# Labels per slab: the memory trade


def test_a_misspelt_way_back_is_refused():
    from segbench.pipelines.nnunet import NnunetPipeline

    NnunetPipeline("unused", 3, (16, 16, 16), back="slabs")  # the name that exists
    for wrong in ("slab", "Slabs", ""):
        with pytest.raises(ValueError, match="back must be one of nnunet, chunked, slabs"):
            NnunetPipeline("unused", 3, (16, 16, 16), back=wrong)
    with pytest.raises(ValueError, match="got 'labels'"):
        NnunetPipeline.from_dict({"model_dir": "unused", "classes": 3, "patch": [16, 16, 16],
                                  "back": "labels"})


def test_slab_estimate_is_far_below_the_full_ways_for_the_fast_network():
    """TotalSegmentator --fast's network (118 classes, patch 112x112x128) on a 280x512x512 CT
    at 1.5x0.78x0.78 mm seen at 3 mm: labels per slab hold one slab of accumulators and the
    CT's labels in uint8, the full ways every accumulator and a CT-sized way back."""
    from segbench.pipelines.nnunet import NnunetPipeline

    grid, ct = (140, 133, 133), (280, 512, 512)
    est = {back: NnunetPipeline("unused", 118, (112, 112, 128), back=back).buffer_bytes(grid, ct)
           for back in ("nnunet", "chunked", "slabs")}
    assert est["slabs"] * 3 < est["chunked"] < est["nnunet"]
    assert est["slabs"] < 1.0 * 2**30
    # the slab way's way back is one byte a CT voxel (plus the CT's float32 itself)
    bigger = NnunetPipeline("unused", 118, (112, 112, 128), back="slabs").buffer_bytes(
        grid, (300, 512, 512))
    assert bigger - est["slabs"] == 20 * 512 * 512 * (1 + 4)
    # the predictor holds nnU-Net's export whatever the back says
    predictor = NnunetPipeline("unused", 118, (112, 112, 128), back="slabs", predictor=True)
    assert predictor.buffer_bytes(grid, ct) == est["nnunet"]


@needs_nnunet
@pytest.mark.parametrize("mirror", [None, (0, 1, 2)])
def test_slab_labels_identical_to_chunked_when_nothing_is_resampled(tmp_path, mirror):
    """At the plans' spacing, with nothing to crop, both ways back are the argmax of the same
    blend (float32 accumulators: no rounding to tell them apart)."""
    from segbench.measure import StageClock
    from segbench.pipelines import nnunet
    from segbench.pipelines.scan import CT

    folder = nf.read_folder(write_folder(tmp_path, classes=4, mirror=mirror))
    net = nf.build_network(folder)
    ct = CT(tiny_ct().hu, (2.0, 2.0, 2.0))
    labels, stages = {}, {}
    for back in ("chunked", "slabs"):
        pipe = nnunet.NnunetPipeline.of_folder(folder, back=back, accumulate="float32")
        data, props = nnunet.preprocess(ct, pipe)
        assert data.shape[1:] == ct.shape  # the premise: no resampling, no crop
        assert [list(b) for b in props["bbox_used_for_cropping"]] == [[0, n] for n in ct.shape]
        stages[back] = StageClock()
        with torch.no_grad():
            labels[back] = nnunet.run(net, ct, pipe, stages[back])
    assert labels["slabs"].shape == ct.shape and labels["slabs"].dtype == np.uint8
    assert len(np.unique(labels["chunked"])) > 1
    assert np.array_equal(labels["slabs"], labels["chunked"])
    assert {"predict", "accumulate", "argmax", "resample back"} <= set(stages["slabs"].seconds)


@needs_nnunet
def test_slab_way_back_is_nnunets_order_0_segmentation_resampling(tmp_path):
    """labels_back_nearest = nnU-Net's resampling of a segmentation to a shape at order 0, the
    crop put back into its box (nnU-Net's insert_crop_into_image) and the transpose undone."""
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    from segbench.pipelines import nnunet

    pipe = nnunet.NnunetPipeline.of_folder(nf.read_folder(write_folder(tmp_path)), back="slabs")
    rng = np.random.default_rng(3)
    cases = [((10, 12, 12), (20, 30, 31), (2.0,) * 3, (1.0, 0.8, 0.8)),
             ((7, 13, 9), (29, 13, 5), (3.0, 0.7, 1.5), (0.7, 0.7, 3.0)),  # separate z
             ((9, 9, 9), (9, 9, 9), (2.0,) * 3, (2.0,) * 3)]
    for grid, cropped, spacing_net, spacing_ct in cases:
        seg = rng.integers(0, 5, grid).astype(np.uint8)
        before = tuple(n + 3 for n in cropped)
        bbox = [[1, 1 + n] for n in cropped]
        props = {"shape_after_cropping_and_before_resampling": cropped,
                 "shape_before_cropping": before, "bbox_used_for_cropping": bbox}
        ours = nnunet.labels_back_nearest(seg, props, pipe, rows=4)
        theirs = resample_data_or_seg_to_shape(seg[None], cropped, spacing_net, spacing_ct,
                                               is_seg=True, order=0, order_z=0,
                                               force_separate_z=None)[0]
        theirs = insert_crop_into_image(np.zeros(before, dtype=np.uint8), theirs, bbox)
        assert ours.shape == before and np.array_equal(ours, theirs)


def _nifti_ct(path: Path) -> str:
    import nibabel as nib

    hu = np.concatenate([tiny_ct().hu] * 2)  # 40 x 24 x 24, then 64 x 64 in plane (air)
    hu = np.pad(hu, ((0, 0), (20, 20), (20, 20)), constant_values=-1000.0)
    nib.save(nib.Nifti1Image(hu.transpose(2, 1, 0).astype(np.int16),
                             np.diag([1.5, 1.5, 2.5, 1.0])), str(path))
    return str(path)


@needs_nnunet
def test_tight_budget_runs_labels_per_slab_where_the_chunked_way_is_refused(tmp_path):
    from types import SimpleNamespace

    from segbench.benchmarks.own_model import plan

    folder = write_folder(tmp_path, classes=4)
    ct = _nifti_ct(tmp_path / "ct.nii.gz")

    def cells(budget=None):
        opts = SimpleNamespace(
            extra={"nnunet_model": str(folder), "fold": "0", "configuration": "",
                   "checkpoint": "checkpoint_final.pth", "input": ct, "memory_budget": budget},
            runtimes=["eager", "ort-fp32"], threads=1, quick=True, dry_run=True)
        return {(c.extra["method"], c.runtime): c
                for c in plan.nnunet_cells(SimpleNamespace(name="own_model"), opts, [ct])}

    roomy = cells()
    # without a budget: the slab way once, beside eager's chunked way and nnU-Net's export
    assert set(roomy) == {("predictor", "eager"), ("loop-nnunet-back", "eager"),
                          ("loop", "eager"), ("loop-slabs", "eager"), ("loop", "ort-fp32")}
    assert not any("budget_refused" in c.extra for c in roomy.values())
    est = {k: c.extra["estimated_peak_bytes"] for k, c in roomy.items()}
    slab, chunked = est[("loop-slabs", "eager")], est[("loop", "eager")]
    assert slab < chunked < est[("loop-nnunet-back", "eager")]
    assert roomy[("loop-slabs", "eager")].scenario["pipeline"]["back"] == "slabs"

    tight = cells((slab + chunked) / 2 / 2**30)  # between the two estimates
    refused = {k for k, c in tight.items() if "budget_refused" in c.extra}
    assert refused == {("predictor", "eager"), ("loop-nnunet-back", "eager"),
                       ("loop", "eager"), ("loop", "ort-fp32")}
    assert set(tight) - refused == {("loop-slabs", "eager"), ("loop-slabs", "ort-fp32")}
    assert "exceeds the --memory-budget" in tight[("loop", "ort-fp32")].extra["budget_refused"]

    too_tight = cells(slab / 2 / 2**30)  # nothing fits: no slab way added, eager's is refused
    assert ("loop-slabs", "ort-fp32") not in too_tight
    assert "budget_refused" in too_tight[("loop-slabs", "eager")].extra


def test_view_says_what_labels_per_slab_cost_against_the_chunked_way():
    from segbench.benchmarks.own_model import view
    from segbench.results import Record

    def record(method, runtime, ms, estimate, peak, dice=0.995, status="ok"):
        return Record(benchmark="own_model", key=f"{method}|{runtime}", model="m",
                      runtime=runtime, shape=[], batch=1, threads=2, status=status,
                      timing={"latency_p50_ms": ms} if status == "ok" else {},
                      extra={"method": method, "title": method, "dice_vs_eager": dice,
                             "estimated_peak_bytes": estimate, "loop_peak_rss_bytes": peak,
                             "stages_s": {"predict": 1.0, "argmax": 0.5,
                                          "resample back": 0.25}})

    records = [record("loop", "eager", 40_000, 4 * 2**30, 6 * 2**30),
               record("loop-slabs", "eager", 43_500, 1 * 2**30, 2 * 2**30),
               record("loop", "ort-fp32", 0, 4 * 2**30, None, status="skipped"),
               record("loop-slabs", "ort-fp32", 30_000, 1 * 2**30, 2 * 2**30)]
    text = " ".join(view.slab_costs(records))
    assert "under eager against the chunked way back: +3.5 s per CT (43.5 s)" in text
    assert "estimate -3.0 GiB, measured peak -4.0 GiB, Dice 0.9950" in text
    assert "under ort-fp32: 30.0 s per CT" in text and "did not run (skipped)" in text
    rows = {(r[0], r[1]): r for r in view.per_ct_rows(records)}
    assert rows[("loop-slabs", "eager")][5] == "0.75"  # the way back counts the argmax
    assert view.slab_costs(records[:1]) == []
