"""Real-CT quality: the data set reader, its refusals, grid ceilings and metrics, on tiny NIfTI
files written here (the real data sets are not needed; one test reads them when present)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segbench import quality
from segbench.realct import grids
from segbench.realct.dataset import DatasetError, check, load_case, open_dataset
from segbench.realct.measure_quality import ceiling_of_volume

LPS_AFFINE = np.array([[0.0, -2.0, 0.0, 0.0],  # stored like OpenKBP: i -> posterior, j -> left,
                       [-2.0, 0.0, 0.0, 0.0],  # k -> inferior (codes P, L, I), 2 x 2 x 3 mm
                       [0.0, 0.0, -3.0, 0.0],
                       [0.0, 0.0, 0.0, 1.0]])


def _write(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def make_dataset(root: Path, cases: int = 3, shape=(6, 5, 4)) -> Path:
    """A tiny nnU-Net raw data set: labels 1 'Liver', 2 'Kidney'; a split file."""
    labels = {"background": 0, "Liver": 1, "Kidney": 2}
    (root / "dataset.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"name": "tiny", "labels": labels,
                                                   "file_ending": ".nii.gz"}))
    names = [f"T_{i:03d}" for i in range(cases)]
    for i, name in enumerate(names):
        image = np.full(shape, -1000, np.int16)
        lab = np.zeros(shape, np.uint8)
        lab[0, 0, 0] = 1  # stored voxel (0, 0, 0): the most posterior, left, inferior corner
        lab[1, 2, 3] = 2
        image[lab > 0] = 40 + i
        _write(root / "imagesTr" / f"{name}_0000.nii.gz", image)
        _write(root / "labelsTr" / f"{name}.nii.gz", lab)
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "test": names[-1:]}))
    return root


def test_reader_reorients_to_canonical_and_reads_spacing_labels_and_splits(tmp_path):
    ds = open_dataset(make_dataset(tmp_path / "d"))
    assert ds.name == "tiny" and ds.labels == {1: "Liver", 2: "Kidney"} and ds.classes == 3
    assert [c.name for c in ds.split("train")] == ["T_000", "T_001"]
    assert [c.name for c in ds.split("test")] == ["T_002"]
    v = load_case(ds, ds.cases[0])
    # canonical RAS (axes pointing to Right, Anterior, Superior), held as (z, y, x): stored
    # axes (P, L, I) of lengths (6, 5, 4) become x = stored j flipped, y = stored i flipped,
    # z = stored k flipped
    assert v.hu.shape == (4, 6, 5) and v.labels.shape == (4, 6, 5)
    assert v.spacing == pytest.approx((3.0, 2.0, 2.0))
    z, y, x = np.argwhere(v.labels == 1)[0]
    assert (z, y, x) == (3, 5, 4)  # stored (i, j, k) = (0, 0, 0): z = 4-1-0, y = 6-1-0, x = 5-1-0
    z, y, x = np.argwhere(v.labels == 2)[0]
    assert (z, y, x) == (0, 4, 2)  # stored (1, 2, 3): z = 4-1-3, y = 6-1-1, x = 5-1-2
    assert v.hu[v.labels == 1][0] == 40


def test_nnunet_splits_final_is_read(tmp_path):
    root = make_dataset(tmp_path / "d")
    (root / "splits.json").unlink()
    (root / "splits_final.json").write_text(json.dumps([{"train": ["T_000"], "val": ["T_001"]}]))
    ds = open_dataset(root)
    assert [c.name for c in ds.split("validation")] == ["T_001"]
    with pytest.raises(DatasetError, match="no split 'test'"):
        ds.split("test")


def _corrupt(root: Path, what: str) -> Path:
    """Break the tiny data set in one way; returns the file the message must name."""
    lab = root / "labelsTr" / "T_001.nii.gz"
    img = root / "imagesTr" / "T_001_0000.nii.gz"
    if what == "no dataset.json":
        (root / "dataset.json").unlink()
        return root / "dataset.json"
    if what == "image without label":
        lab.unlink()
        return img
    if what == "label shape":
        _write(lab, np.zeros((6, 5, 5), np.uint8))
        return lab
    if what == "label spacing":
        _write(lab, np.zeros((6, 5, 4), np.uint8), np.diag([1.0, 1.0, 1.0, 1.0]))
        return lab
    if what == "2d image":
        _write(img, np.zeros((6, 5), np.int16))
        return img
    if what == "4d image":
        _write(img, np.zeros((6, 5, 4, 2), np.int16))
        return img
    if what == "unknown label value":
        data = np.zeros((6, 5, 4), np.uint8)
        data[2, 2, 2] = 7
        _write(lab, data)
        return lab
    if what == "truncated":
        raw = img.read_bytes()
        img.write_bytes(raw[: len(raw) // 2])
        return img
    raise AssertionError(what)


BAD = ["no dataset.json", "image without label", "label shape", "label spacing", "2d image",
       "4d image", "unknown label value", "truncated"]


@pytest.mark.parametrize("what", BAD)
def test_bad_input_is_one_line_naming_the_file(tmp_path, what):
    root = make_dataset(tmp_path / "d")
    named = _corrupt(root, what)
    with pytest.raises(DatasetError) as info:
        ds = open_dataset(root)
        check(ds, ds.cases)
    message = str(info.value)
    assert "\n" not in message and str(named) in message


@pytest.mark.parametrize("what", ["truncated", "unknown label value"])
def test_bad_input_exits_2_before_any_work_and_writes_nothing(tmp_path, capsys, what):
    from segbench.realct.run import main

    root = make_dataset(tmp_path / "d")
    _corrupt(root, what)
    out = tmp_path / "results"
    assert main(["--dataset", str(root), "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([e for e in err if "error" in e]) == 1 and "Traceback" not in "\n".join(err)
    assert not list(out.rglob("*.json"))


def test_usage_errors_exit_2(tmp_path, capsys):
    from segbench.realct.run import main

    assert main(["--out", str(tmp_path)]) == 2  # a full run needs data
    assert main(["--quick", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert main(["--dataset", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# --- grid ceilings ---------------------------------------------------------------------------


def test_lowres_ceiling_of_a_known_mask_by_hand():
    """1/4 in-plane: 4x4 blocks share one label. A 3x3 organ in one block holds 9 of its 16
    voxels (majority): the block becomes organ, Dice = 2*9 / (9 + 16) = 0.72. A 2x2 organ holds
    4 of 16: the block stays background, Dice 0."""
    from segbench.realct.dataset import Volume

    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 0:3, 0:3] = 1
    labels[0, 4:6, 4:6] = 2
    vol = Volume("x", np.zeros(labels.shape, np.float32), labels, (1.0, 1.0, 1.0))
    scores = ceiling_of_volume(vol, {1: "a", 2: "b"}, grids.grid("2d-lowres"), 2.0)
    assert scores["a"][0] == pytest.approx(0.72)
    assert scores["b"] == (0.0, 0.0)


def test_3d_grid_groups_follow_the_pipelines_nearest_resampling():
    """1.5 mm voxels on a 3 mm grid: pairs of voxels per axis share one grid voxel, exactly
    the voxels pipelines.resample.labels_back_nearest gives the same label."""
    from segbench.pipelines.resample import labels_back_nearest

    g = grids.grid("3d-3mm")
    shape = g.shape((4, 4, 4), (1.5, 1.5, 1.5))
    assert shape == (2, 2, 2)
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:2, :2, :2] = 1  # one whole group: kept exactly
    labels[2:, 2:, 2] = 2  # half of a group (4 of 8): a tie, which goes to the background
    best = grids.best_labels(labels, shape)
    assert (best == np.where(labels == 1, 1, 0)).all()
    coarse = best[::2, ::2, ::2]
    assert (labels_back_nearest(coarse, (4, 4, 4)) == best).all()


def test_mask_ceiling_on_a_crop_equals_the_whole_volume():
    rng = np.random.default_rng(3)
    mask = np.zeros((20, 40, 40), bool)
    mask[4:13, 9:30, 5:22] = rng.random((9, 21, 17)) > 0.3
    for shape in [(20, 10, 10), (10, 27, 27), (25, 50, 50), (3, 7, 7)]:
        assert (grids.best_mask(mask, shape)
                == grids.best_labels(mask.astype(np.uint8), shape).astype(bool)).all()


def test_a_finer_grid_keeps_everything():
    labels = np.zeros((5, 9, 9), np.uint8)
    labels[1:4, 2:7, 3:5] = 1
    shape = grids.grid("3d-1.5mm").shape(labels.shape, (3.0, 3.0, 3.0))
    assert (grids.best_labels(labels, shape) == labels).all()


# --- metrics ---------------------------------------------------------------------------------


def test_dice_and_nsd_from_monai():
    a = np.zeros((12, 20, 20), bool)
    a[3:9, 5:15, 5:15] = True
    assert quality.organ_scores(a, a, (1.0, 1.0, 1.0), 2.0) == pytest.approx((1.0, 1.0))
    shifted = np.roll(a, 1, axis=2)  # one voxel: inside a 2 mm tolerance, not a 0.5 mm one
    dice, nsd = quality.organ_scores(a, shifted, (1.0, 1.0, 1.0), 2.0)
    assert dice == pytest.approx(2 * 540 / 1200) and nsd == pytest.approx(1.0)
    assert quality.organ_scores(a, shifted, (1.0, 1.0, 1.0), 0.5)[1] < 0.95
    assert quality.organ_scores(a, np.zeros_like(a), (1.0, 1.0, 1.0), 2.0) == (0.0, 0.0)
    assert quality.organ_scores(np.zeros_like(a), a, (1.0, 1.0, 1.0), 2.0) is None


def test_per_organ_scores_only_organs_of_the_reference():
    ref = np.zeros((6, 10, 10), np.uint8)
    ref[1:4, 2:6, 2:6] = 1
    pred = ref.copy()
    pred[4, 8, 8] = 2  # organ 2 predicted, not in the reference: not scored
    scores = quality.per_organ(ref, pred, {1: "a", 2: "b"}, (1.0, 1.0, 1.0))
    assert list(scores) == ["a"] and scores["a"]["dice"] == pytest.approx(1.0)


# --- end to end ------------------------------------------------------------------------------


def test_quick_trained_run_on_a_tiny_dataset_names_it_in_every_row(tmp_path, monkeypatch):
    from segbench.realct import training
    from segbench.realct.run import main
    from segbench.results import full_results_files, load

    monkeypatch.setattr(training, "WEIGHTS_DIR", tmp_path / "weights")  # not the user's cache
    root = make_dataset(tmp_path / "d", cases=3, shape=(64, 64, 4))
    out = tmp_path / "results"
    assert main(["--dataset", str(root), "--methods", "2d-champion", "--grids", "2d-lowres",
                 "--out", str(out), "--quick"]) == 0
    files = list((out / "real_ct").glob("*.quick.json"))
    assert files and not full_results_files(out, "real_ct")
    records = load(files[0]).records
    kinds = sorted(r.extra["kind"] for r in records)
    assert kinds == ["ceiling", "trained", "trained"]  # lowres and full paths, eager
    assert list((tmp_path / "weights").glob("realct-2d-champion-*.safetensors"))
    for r in records:
        assert r.extra["dataset"]["name"] == "tiny" and r.extra["dataset"]["cases"] == 1
        assert r.ok, r.reason
    trained = [r for r in records if r.extra["kind"] == "trained"]
    assert {r.extra["path"] for r in trained} == {"lowres", "full"}
    assert all(r.extra["training"]["steps"] >= 1 for r in trained)
    from segbench.realct.view import render
    from segbench.results import load as load_file

    text = render(load_file(files[0]))
    assert "tiny, 1 case(s) of split 'test'" in text


OBSERVERS = Path(os.environ.get("SEGBENCH_OBSERVERS", "../shared/data/hn-oar-observers"))


@pytest.mark.skipif(not OBSERVERS.is_dir(), reason="the hn-oar-observers data set is not here "
                    "(set SEGBENCH_OBSERVERS to its folder)")
def test_observer_masks_of_the_real_set_read_as_binary_canonical_masks():
    from segbench.realct.observers import load_mask, open_observers

    scans = open_observers(OBSERVERS)
    assert len(scans) >= 2 and len(scans[0].annotators) == 2
    mask, spacing = load_mask(scans[0].masks[scans[0].annotators[0]]["Lens-Lt"])
    assert mask.dtype == bool and 0 < mask.sum() < 10_000
    assert spacing[0] > spacing[1]  # slices thicker than in-plane voxels


def test_truncated_gzip_is_detected_without_reading_it_twice(tmp_path):
    """A file that is a valid gzip header and then nothing is refused too."""
    root = make_dataset(tmp_path / "d")
    img = root / "imagesTr" / "T_000_0000.nii.gz"
    img.write_bytes(gzip.compress(b"not a nifti"))
    with pytest.raises(DatasetError, match="T_000_0000"):
        ds = open_dataset(root)
        check(ds, ds.cases)


def test_the_path_verdict_comes_from_this_machine_first_else_another_named(tmp_path):
    from segbench.realct.view import find_path_verdict
    from segbench.results import Record, ResultsFile, save

    def real(path, dice):
        return Record(benchmark="real_ct", key=f"trained|X|2d-champion|{path}|eager",
                      model="m", runtime="eager", shape=[], batch=1, threads=2,
                      extra={"kind": "trained", "method": "2d-champion", "path": path,
                             "mean_dice": dice, "mean_nsd": dice,
                             "dataset": {"name": "X", "split": "test", "cases": 3}})

    def machine(model):
        return {"cpu": "AMD EPYC", "physical_cores": 2, "microarchitecture": f"Zen {model}",
                "family": 25, "model": model}

    assert find_path_verdict(tmp_path, "here") is None  # no real_ct folder at all
    save(tmp_path / "real_ct" / "elsewhere.json",
         ResultsFile("real_ct", machine(4), [real("lowres", 0.3), real("full", 0.5)]))
    other = find_path_verdict(tmp_path, "here")
    assert other["cost"] == pytest.approx(0.2) and not other["same_machine"]
    assert "Zen 4" in other["machine"]
    save(tmp_path / "real_ct" / "here.json",
         ResultsFile("real_ct", machine(5), [real("lowres", 0.45), real("full", 0.5)]))
    mine = find_path_verdict(tmp_path, "here")
    assert mine["cost"] == pytest.approx(0.05) and mine["same_machine"]


def test_the_readme_summary_counts_organs_below_the_annotators_and_the_worst_runtime():
    from segbench.realct.view import summary_tables
    from segbench.results import Record

    ds = {"name": "Obs", "split": "all", "cases": 2}

    def rec(kind, runtime="eager", key="k", **extra):
        return Record(benchmark="real_ct", key=key, model="m", runtime=runtime, shape=[],
                      batch=1, threads=2, extra={"kind": kind, "dataset": ds, **extra})

    organs_ia = {"a": {"dice": 0.8, "nsd": 0.9}, "b": {"dice": 0.6, "nsd": 0.7}}
    organs_grid = {"a": {"dice": 0.7, "nsd": 0.9}, "b": {"dice": 0.65, "nsd": 0.7}}
    trained = {"method": "2d-x", "path": "full", "display": "X", "mean_nsd": 0.4,
               "training": {"budget": "5 core-minutes", "steps": 10}}
    records = [rec("inter_annotator", key="ia", organs=organs_ia, mean_dice=0.7, mean_nsd=0.8),
               rec("ceiling", key="g", organs=organs_grid, mean_dice=0.675, mean_nsd=0.8,
                   display="grid G"),
               rec("trained", key="t|eager", mean_dice=0.5, **trained),
               rec("trained", "int8", key="t|int8", mean_dice=0.45, **trained),
               rec("trained", "bf16", key="t|bf16", mean_dice=0.49, **trained),
               rec("trained", "bf16", key="t|bf16|80cm", mean_dice=0.1, **trained)]
    (_, ceilings), (caption, methods) = summary_tables(records)
    assert "0.675 / 0.800, 1/2 below" in ceilings and "grid G" in ceilings
    assert "-0.050 (`int8`)" in methods and "5 core-minutes" in caption
