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
