"""Whole-CT pipelines on tiny volumes and tiny networks, NIfTI input, the benchmark's matrix."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from segbench import quality
from segbench.bench import load_script, main
from segbench.catalogue import Pipeline
from segbench.cell import Cell
from segbench.measure import Protocol, StageClock
from segbench.models import ModelSpec
from segbench.pipelines import loop, resample, scan, scenario

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "whole_ct" / "benchmark.py"


@pytest.fixture(scope="module")
def ct():
    return scan.phantom_ct((20, 64, 64), (3.0, 2.0, 2.0), seed=5, cache=None)


def conv3d(classes):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, classes, 3, padding=1)
    return lambda x: conv(x).detach()


@pytest.mark.parametrize("back", ["nearest", "probabilities"])
@pytest.mark.parametrize("accumulate", ["float16", "float32"])
def test_3d_pipeline_returns_labels_on_the_ct_grid(ct, back, accumulate):
    pipe = Pipeline("3d", "tiny", 5, spacing_mm=4.0, patch=(16, 16, 16), step=0.5,
                    back=back, accumulate=accumulate)
    stages = StageClock()
    labels = loop.run(conv3d(5), ct, pipe, stages)
    assert labels.shape == ct.shape and labels.dtype == np.uint8
    assert labels.max() < 5
    assert {"resample", "normalise", "predict", "accumulate", "resample back"} <= set(
        stages.seconds)


def test_both_ways_back_mostly_agree(ct):
    def labels(back):
        pipe = Pipeline("3d", "tiny", 4, spacing_mm=4.0, patch=(16, 16, 16),
                        step=0.5, back=back)
        return loop.run(conv3d(4), ct, pipe, StageClock())

    # nearest on labels and argmax of interpolated logits differ only along label borders
    assert scenario.agreement(labels("nearest"), labels("probabilities")) > 70


@pytest.mark.parametrize("batch", [1, 3])  # 3 does not divide 20 slices: a padded last batch
def test_2d_pipeline_returns_labels_on_the_ct_grid(ct, batch):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 7, 3, padding=1)
    calls = []

    def call(x):
        calls.append(tuple(x.shape))
        return conv(x).detach()

    pipe = Pipeline("2d", "tiny", 7, batch=batch)
    labels = loop.run(call, ct, pipe, StageClock())
    assert labels.shape == ct.shape and labels.dtype == np.uint8
    assert set(calls) == {(batch, 3, 64, 64)}  # one static shape for exported runtimes
    assert len(calls) == pipe.passes(ct.shape, ct.spacing)


def test_2d_pipeline_takes_labels_from_the_network(ct):
    # a network with the argmax in its graph (family fpn-labels) hands back uint8 labels
    pipe = Pipeline("2d", "tiny", 3, batch=4)
    labels = loop.run(lambda x: torch.ones(x.shape[0], 64, 64, dtype=torch.uint8), ct, pipe,
                      StageClock())
    assert (labels == 1).all()


def test_labels_back_nearest_keeps_a_constant_block():
    small = np.zeros((4, 4, 4), dtype=np.uint8)
    small[1:3, 1:3, 1:3] = 2
    big = resample.labels_back_nearest(small, (8, 8, 8))
    assert big.shape == (8, 8, 8)
    assert (big[2:6, 2:6, 2:6] == 2).all() and big.sum() == 2 * 64


def test_dice_of_a_perfect_and_an_empty_prediction(ct):
    assert quality.foreground_mean_dice(ct.truth, ct.truth) == pytest.approx(1.0)
    assert quality.foreground_mean_dice(ct.truth, np.zeros_like(ct.truth)) == 0.0


# --- NIfTI input ------------------------------------------------------------------------------

def write_nifti(path, shape, zooms):
    data = np.random.default_rng(0).normal(0, 100, shape).astype(np.int16)
    affine = np.eye(4)
    affine[range(len(zooms)), range(len(zooms))] = zooms
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return data


def test_a_nifti_is_read_as_z_y_x_with_its_spacing(tmp_path):
    path = tmp_path / "ct.nii.gz"
    data = write_nifti(path, (24, 20, 10), (0.8, 0.7, 2.5))  # (x, y, z) as NIfTI stores it
    ct = scan.read_nifti(path)
    assert ct.shape == (10, 20, 24)
    assert ct.spacing == pytest.approx((2.5, 0.7, 0.8))
    assert ct.truth is None
    np.testing.assert_array_equal(ct.hu, data.transpose(2, 1, 0).astype(np.float32))


def run_script(argv, capsys):
    code = main(load_script(SCRIPT), argv)
    return code, capsys.readouterr().err


def test_input_2d_nifti_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "slice.nii"
    write_nifti(path, (16, 16), (1.0, 1.0))
    code, err = run_script(["--input", str(path), "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "3 axes" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("whole_ct/*"))  # no work done, no file written


@pytest.mark.parametrize("content", [None, b"not a nifti at all"])
def test_input_missing_or_unreadable_is_exit_2(tmp_path, capsys, content):
    path = tmp_path / "ct.nii.gz"
    if content is not None:
        path.write_bytes(content)
    code, err = run_script(["--input", str(path), "--out", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("no such file" in err) if content is None else ("cannot read" in err)


# --- the matrix -------------------------------------------------------------------------------

def test_matrix_starts_with_the_2d_baseline_and_ends_with_stunet_b(tmp_path):
    bench = load_script(SCRIPT)
    opts = bench.parse(["--out", str(tmp_path), "--dry-run"])
    cells = bench.make_cells(opts)
    methods = [c.extra["method"] for c in cells]
    assert methods[0] == "2d-original" and cells[0].runtime == "ort-fp32"
    assert methods[-1] == "stunet-b"
    assert cells[0].scenario["pipeline"]["path"] == "full"
    fast = [c for c in cells if c.extra["method"] == "totalseg-fast"]
    assert fast[0].runtime == "eager" and len(fast) >= 3
    assert fast[0].scenario["pipeline"]["step"] == 0.8
    assert fast[0].scenario["pipeline"]["accumulate"] == "float16"
    assert all(c.protocol.repeats >= 1 and c.protocol.warmup_calls == 0 for c in cells)


def test_input_cells_read_the_file_and_score_agreement(tmp_path):
    path = tmp_path / "ct.nii.gz"
    write_nifti(path, (32, 32, 16), (1.0, 1.0, 2.0))
    bench = load_script(SCRIPT)
    opts = bench.parse(["--input", str(path), "--out", str(tmp_path), "--dry-run",
                        "--models", "totalseg-fast"])
    cells = bench.make_cells(opts)
    assert cells and all(c.scenario["ct"] == {"kind": "nifti", "path": str(path.resolve())}
                         for c in cells)
    assert {c.scenario["quality"] for c in cells} == {"agreement"}


# --- one cell through the harness -------------------------------------------------------------

def test_a_whole_ct_cell_runs_in_the_worker():
    from segbench.worker import run_cell

    source = {"kind": "phantom", "shape": [16, 64, 64], "spacing": [3.0, 2.0, 2.0], "seed": 3,
              "cache": False}
    pipe = Pipeline("2d", "tiny", 3, batch=4)
    cell = Cell(benchmark="test", model=ModelSpec("testing", "tiny", 3), runtime="eager",
                shape=(4, 3, 64, 64), threads=1, fidelity=False,
                protocol=Protocol(warmup_calls=0, warmup_seconds=0.0, repeats=1,
                                  repeat_seconds=0.0, repeat_calls=1, quick=True),
                scenario={"kind": "whole_ct", "ct": source, "pipeline": pipe.to_dict(),
                          "quality": "dice", "estimate_passes": 1})
    record = run_cell(cell)
    assert record.ok, record.reason
    assert record.extra["passes"] == 4 and record.extra["estimate_s"] > 0
    assert set(record.extra["stages_s"]) == {"window", "predict", "argmax"}
    assert 0 <= record.extra["dice"] <= 1
    assert record.extra["loops_run"] == 2  # the warm-up loop and one timed loop


def test_per_ct_headline_skips_runtimes_that_change_the_output():
    from segbench.benchmarks.whole_ct import view as wb
    from segbench.results import Record

    def loop(method, runtime, seconds, **extra):
        return Record(benchmark="whole_ct", key=f"{method}|{runtime}", model=method,
                      runtime=runtime, shape=[1], batch=1, threads=2,
                      timing={"throughput": 1 / seconds, "latency_p50_ms": seconds * 1e3},
                      extra={"method": method, "networks": 1, **extra})

    records = [loop("2d-original", "ort-fp32", 20.0, dice=0.9),
               loop("totalseg-fast", "eager", 40.0, dice=0.5),
               loop("totalseg-fast", "openvino-int8", 10.0, dice=0.1, dice_vs_eager=0.2),
               loop("totalseg-fast", "openvino-bf16", 15.0, dice=0.5, dice_vs_eager=0.97)]
    line = wb.headline(records)[0]
    assert "15 s under openvino-bf16" in line and "openvino-int8" not in line
    assert not wb.keeps_output(records[2]) and wb.keeps_output(records[1])


def test_part_networks_repeat_only_their_own_stages():
    """TotalSegmentator's five parts: the CT is resampled to 1.5 mm and back once; normalise,
    passes, blending and argmax once per network."""
    from segbench.benchmarks.whole_ct import view as wb
    from segbench.results import Record

    stages = {"resample": 2.0, "normalise": 1.0, "predict": 10.0, "accumulate": 1.0,
              "argmax": 1.0, "resample back": 3.0}
    r = Record(benchmark="whole_ct", key="k", model="m", runtime="eager", shape=[1], batch=1,
               threads=2, timing={"throughput": 1 / 18.0, "latency_p50_ms": 18e3},
               extra={"method": "totalseg-default", "networks": 5, "stages_s": stages})
    assert wb.seconds_per_ct(r) == pytest.approx(18.0 + 4 * 13.0)
    cols = wb.stage_seconds(r)
    assert cols["preprocess"] == pytest.approx(2.0 + 5 * 1.0)
    assert cols["network"] == pytest.approx(50.0)
    assert cols["resample back"] == pytest.approx(3.0)
    one = Record(**{**r.to_dict(), "extra": {**r.extra, "networks": 1}})
    assert wb.seconds_per_ct(one) == pytest.approx(18.0)


def test_per_ct_rows_give_the_ratio_to_the_real_tool_when_it_ran():
    from segbench.benchmarks.whole_ct import view as wb
    from segbench.peers.whole_ct import peer_key
    from segbench.results import Record

    assert peer_key("fast", True) == wb.PEER_FAST_KEY

    def loop(method, runtime, seconds):
        return Record(benchmark="whole_ct", key=f"{method}|{runtime}", model=method,
                      runtime=runtime, shape=[1], batch=1, threads=2,
                      timing={"throughput": 1 / seconds, "latency_p50_ms": seconds * 1e3},
                      extra={"method": method, "networks": 1, "dice": 0.8})

    records = [loop("2d-original", "ort-fp32", 20.0), loop("totalseg-fast", "eager", 40.0)]
    col = wb.PER_CT_HEADERS.index("vs the real tool --fast")
    assert [row[col] for row in wb.per_ct_rows(records)[:2]] == [wb.DASH, wb.DASH]
    assert "real TotalSegmentator" not in wb.headline(records)[0]
    tool = Record(benchmark="whole_ct", key=wb.PEER_FAST_KEY, model="TotalSegmentator",
                  runtime="eager", shape=[1], batch=1, threads=2, family="peer",
                  timing={"median_s": 80.0})
    rows = wb.per_ct_rows([*records, tool])
    assert [row[col] for row in rows[:2]] == ["0.25x", "0.50x"]
    assert not any(row[0] == "TotalSegmentator" for row in rows)  # the peer has its own table
    assert all(len(row) == len(wb.PER_CT_HEADERS) for row in rows)
    assert "took 80 s on the same CT" in wb.headline([*records, tool])[0]


def test_a_barely_trained_network_says_its_dice_compares_runtimes_only():
    from segbench.benchmarks.whole_ct import view as wb
    from segbench.results import Record

    def rec(dice):
        return Record(benchmark="whole_ct", key="k", model="m", runtime="eager", shape=[1],
                      batch=1, threads=2, timing={"throughput": 1.0},
                      extra={"method": "totalseg-fast", "dice": dice})

    assert "barely trained" in wb.quality_text(rec(0.06))
    assert wb.quality_text(rec(0.73)) == "Dice 0.730"
