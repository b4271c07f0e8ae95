"""champion_3d: the 3D search's knobs keep labels where they must, its calibration reads only CT
tiles, it always holds the FP32 eager reference, and its view picks the champion by Dice."""

import numpy as np
import pytest
import torch

from segbench import tiling, volume
from segbench.benchmarks.champion_3d import plan, view
from segbench.catalogue import Pipeline, network_stride, whole_grid_patch
from segbench.pipelines import inputs, loop, scan
from segbench.results import Record

PHANTOM_GRID = (140, 133, 133)  # the 512x512x280 phantom at 3 mm


def _net(classes=3, seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d(1, classes, 3, padding=1).eval()

    def call(x):
        with torch.no_grad():
            return conv(x)
    return call


def _reference_blend(call, x, patch, step, classes):
    """The sliding window written plainly in float64: pad, tile, weight, add, divide, crop."""
    pads = volume.padding_to_patch(x.shape[1:], patch)
    xp = np.pad(x, [(0, 0), *pads])
    acc = np.zeros((classes, *xp.shape[1:]))
    wsum = np.zeros(xp.shape[1:])
    w = volume._accumulator_weights(patch, True, torch.float32).double().numpy()
    for starts in __import__("itertools").product(*tiling.tile_grid(xp.shape[1:], patch, step)):
        win = tuple(slice(s, s + p) for s, p in zip(starts, patch))
        tile = torch.from_numpy(np.ascontiguousarray(xp[(slice(None), *win)]))[None].float()
        acc[(slice(None), *win)] += call(tile)[0].double().numpy() * w
        wsum[win] += w
    out = acc / wsum
    crop = tuple(slice(b, b + n) for (b, _), n in zip(pads, x.shape[1:]))
    return out[(slice(None), *crop)]


@pytest.mark.parametrize("shape, patch, step", [((20, 24, 28), (8, 16, 16), 0.5),
                                                ((16, 16, 16), (16, 16, 16), 1.0),
                                                ((10, 30, 12), (8, 8, 16), 0.8)])
def test_unmirrored_window_with_reused_buffers_matches_a_plain_blend(shape, patch, step):
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    call = _net()
    got = volume.sliding_window_predict(call, x, patch, step, 3, accumulate="float32").numpy()
    want = _reference_blend(call, x, patch, step, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert (got.argmax(0) == want.argmax(0)).all()


def test_step_one_on_a_multiple_of_the_patch_is_the_tiles_side_by_side():
    """Tiles that do not overlap: the blend is each tile's own prediction, labels identical."""
    patch, shape = (8, 8, 8), (16, 8, 24)
    x = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    call = _net()
    want = np.zeros((3, *shape), np.float32)
    for z in (0, 8):
        for xx in (0, 8, 16):
            tile = torch.from_numpy(x[:, z:z + 8, :, xx:xx + 8].copy())[None]
            want[:, z:z + 8, :, xx:xx + 8] = call(tile)[0].numpy()
    got = volume.sliding_window_predict(call, x, patch, 1.0, 3, accumulate="float32").numpy()
    assert (got.argmax(0) == want.argmax(0)).all()
    # (not float16: a tile's corners carry Gaussian weights near float16's smallest number,
    # and where no other tile covers them the rounding shows; see docs/champion_3d.md)


def test_argmax_placement_does_not_matter_when_the_ct_is_on_the_network_grid():
    """Argmax at 3 mm then labels back by nearest, or probabilities back then argmax: the same
    labels when there is nothing to resample (the CT is at the network's spacing)."""
    rng = np.random.default_rng(2)
    ct = scan.CT(rng.normal(0, 300, size=(16, 20, 24)).astype(np.float32), (3.0, 3.0, 3.0))
    base = Pipeline("3d", "test", 3, spacing_mm=3.0, patch=(8, 16, 16), step=0.5,
                    accumulate="float32")
    call = _net()
    near = loop.run_3d(call, ct, base, volume._NoStages())
    probs = loop.run_3d(call, ct, Pipeline.from_dict({**base.to_dict(),
                                                      "back": "probabilities"}),
                        volume._NoStages())
    assert near.shape == ct.shape and (near == probs).all()


def test_the_whole_grid_patch_covers_the_grid_in_one_tile_at_the_networks_stride():
    patch = whole_grid_patch(PHANTOM_GRID, plan.NETWORK)
    assert network_stride(plan.NETWORK) == 16
    assert patch == (144, 144, 144)
    assert all(p % 16 == 0 and p >= g for p, g in zip(patch, PHANTOM_GRID))
    assert tiling.tile_count(PHANTOM_GRID, patch, 1.0) == 1


def test_int8_calibration_reads_only_tiles_of_a_calibration_ct():
    """Calibration inputs are network tiles of a calibration-split phantom preprocessed like
    the CT: the patch's shape, never a tile of the CT being segmented."""
    ct = scan.load_ct({"kind": "phantom", "shape": [48, 96, 96], "spacing": [3.0, 3.0, 3.0],
                       "seed": scan.PHANTOM_SEED})
    for pipe in (plan.tool_pipeline(quick=True),
                 Pipeline.from_dict({**plan.tool_pipeline(quick=True).to_dict(),
                                     "patch": [48, 96, 96], "step": 1.0})):
        tiles = inputs.calibration_passes(ct, pipe, 3, phantom=True)
        assert len(tiles) == 3
        assert all(t.shape == (1, 1, *pipe.patch) and t.dtype == np.float32 for t in tiles)
        own = inputs.centre_tile(loop.preprocess_3d(ct, pipe, volume._NoStages()),
                                 pipe.patch).numpy()
        assert not any(np.array_equal(t, own) for t in tiles)


@pytest.mark.parametrize("quick", [True, False])
def test_the_search_always_starts_with_the_fp32_eager_reference_at_the_tools_settings(quick):
    found = plan.search(PHANTOM_GRID, quick)
    ref = found[0]
    assert ref.is_reference and ref.runtime == "eager" and ref.key == plan.TOOL_KEY
    assert sum(c.is_reference for c in found) == 1
    if not quick:
        assert ref.pipeline.step == 0.8 and ref.pipeline.patch == (112, 112, 128)
        assert ref.pipeline.accumulate == "float16" and ref.pipeline.back == "nearest"
        tool_runtimes = {c.runtime for c in found if c.key == plan.TOOL_KEY and not c.options}
        assert set(plan.RUNTIMES) <= tool_runtimes
        whole = [c for c in found if c.key == "whole-tile"]
        assert {c.runtime for c in whole} == {"eager", *plan.FOCUS}
        assert all(c.pipeline.patch == (144, 144, 144) for c in whole)


def _quick_cells(argv):
    from pathlib import Path

    from segbench.bench import load_script

    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "champion_3d"
                        / "benchmark.py")
    opts = bench.parse(["--quick", "--dry-run", *argv])
    return plan.make_cells(bench, opts)


def test_cells_keep_the_reference_and_score_every_row_against_its_labels():
    cells = _quick_cells([])
    assert [c.extra["variant"] for c in cells] == ["tool", "whole-tile"]
    assert [c.scenario["saves_reference"] for c in cells] == [True, False]
    assert len({c.scenario["reference"] for c in cells}) == 1
    assert len({c.key for c in cells}) == len(cells)
    # a --runtimes list without eager still runs the reference
    only = _quick_cells(["--runtimes", "openvino-bf16"])
    assert [(c.runtime, c.extra["reference_row"]) for c in only] == [("eager", True)]


def _row(variant, runtime, seconds, dice=None, reference=False, ok=True):
    return Record(benchmark="champion_3d", key=f"{variant}|{runtime}", model="totalseg-3mm",
                  runtime=runtime, shape=[1, 1, 8, 8, 8], batch=1, threads=2,
                  status="ok" if ok else "failed", reason="" if ok else "boom",
                  timing={"latency_p50_ms": seconds * 1e3} if ok else {},
                  extra={"method": f"3d-{variant}", "how": variant, "reference_row": reference,
                         "stage": "runtimes", "dice_vs_eager": dice, "passes": 8,
                         "stages_s": {"predict": seconds / 2}})


def test_the_champion_is_the_fastest_row_within_the_tolerance_of_fp32_eager():
    rows = [_row("tool", "eager", 60, reference=True), _row("tool", "openvino-bf16", 20, 0.995),
            _row("whole-tile", "openvino-int8", 5, 0.95),  # faster, but changes the labels
            _row("whole-tile", "openvino-bf16", 8, 0.992), _row("x", "ort-int8", 1, ok=False)]
    best = view.champion(rows)
    assert best.key == "whole-tile|openvino-bf16"
    assert view.champion(rows[:1]).key == "tool|eager"  # the reference always qualifies
    peer = Record(benchmark="champion_3d", key="peer:totalsegmentator:fast:ml", model="ts",
                  runtime="eager", shape=[1], batch=1, threads=2, family="peer",
                  timing={"median_s": 30.0, "runs_s": [30.0, 30.0], "spread": 0.0})
    line = view.headline([*rows, peer])
    assert "3.8x the real TotalSegmentator" in line and "short of 5x" in line
    table = "\n".join(t for _, t in view.tables(None, type("R", (), {"records": [*rows, peer]})))
    assert "**3D champion**" in table and "boom" in table


def _small_unet(classes=4):
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 6, 3, padding=1), torch.nn.LeakyReLU(0.01),
                               torch.nn.Conv3d(6, classes, 1)).eval()


def _openvino_knobs_keep_labels():
    """The knobs that must not move labels, end to end through the whole-CT loop and a real
    OpenVINO FP32 model: tiles per call (a graph of batch 2), 2 streams (calls from 2 threads)
    and labels slab by slab all give the serial loop's labels."""
    from dataclasses import replace

    from segbench import runtimes

    ct = scan.load_ct({"kind": "phantom", "shape": [48, 96, 96], "spacing": [3.0, 3.0, 3.0],
                       "seed": scan.PHANTOM_SEED})
    net = _small_unet()
    base = replace(plan.tool_pipeline(quick=True), classes=4, patch=(32, 48, 48))
    labels = {}
    for name, pipe, options in [("serial", base, {}), ("calls", replace(base, batch=2), {}),
                                ("streams", replace(base, streams=2), {"streams": 2}),
                                ("slabs", replace(base, memory="slabs"), {})]:
        example = inputs.example_pass(ct, pipe)
        assert example.shape[0] == pipe.batch
        prepared = runtimes.get("openvino-fp32").prepare(net, example, 2, **options)
        try:
            labels[name] = loop.run(prepared.call, ct, pipe, volume._NoStages())
        finally:
            prepared.cleanup()
        assert pipe.passes(ct.shape, ct.spacing) == -(-tiling.tile_count(
            pipe.grid(ct.shape, ct.spacing), pipe.patch, pipe.step) // pipe.batch)
    assert labels["serial"].shape == ct.shape and len(np.unique(labels["serial"])) > 1
    for name in ("streams", "slabs"):
        np.testing.assert_array_equal(labels[name], labels["serial"], err_msg=name)
    # a batch-2 graph may pick other kernels: the labels agree, the last bits may not
    assert (labels["calls"] == labels["serial"]).mean() > 0.999


def _in_fresh_process(body):
    """Run ``body`` (a module-level function) in a spawned interpreter: several OpenVINO
    models compiled in the pytest process leave it crashing (SIGSEGV) in later tests that fork
    workers (test_faults), so tests that compile more than one keep them out of it."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(body)


def test_tiles_per_call_streams_and_slabs_keep_the_loops_labels_under_openvino():
    """See :func:`_openvino_knobs_keep_labels` (run in a fresh process)."""
    pytest.importorskip("openvino")
    _in_fresh_process(_openvino_knobs_keep_labels)


def test_the_search_holds_the_knobs_that_keep_labels_and_the_int8_layer_choices():
    found = plan.search(PHANTOM_GRID, quick=False)
    by_stage = {}
    for c in found:
        by_stage.setdefault(c.stage, []).append(c)
    assert [c.pipeline.batch for c in by_stage["calls"]] == list(plan.TILES_PER_CALL)
    assert all(c.runtime == plan.EXACT_RUNTIME for c in by_stage["calls"] + by_stage["memory"])
    assert by_stage["memory"][0].pipeline.memory == "slabs"
    for c in by_stage["streams"]:  # the pipeline and the runtime agree on the streams
        assert c.pipeline.streams == dict(c.options)["streams"] == plan.STREAMS
        assert c.runtime.startswith("openvino")
    assert {dict(c.options).get("keep_float") or dict(c.options).get("preset")
            for c in by_stage["int8"]} == {"first-last", "mixed"}
    keys = [(c.key, c.runtime, c.options) for c in found]
    assert len(keys) == len(set(keys))


def test_a_pipeline_refuses_slabs_without_the_nearest_way_back_and_bad_counts():
    from dataclasses import replace

    tool = plan.tool_pipeline(quick=True)
    with pytest.raises(ValueError, match="nearest"):
        replace(tool, memory="slabs", back="probabilities")
    with pytest.raises(ValueError, match="streams"):
        replace(tool, streams=0)
    assert "streams" not in tool.to_dict() and "memory" not in tool.to_dict()
    assert Pipeline.from_dict(replace(tool, streams=2).to_dict()).streams == 2


def _int8_keeps_named_convolutions():
    from segbench import runtimes

    net = _small_unet()
    example = torch.randn(1, 1, 16, 16, 16)
    rt = runtimes.get("openvino-int8")
    prepared = rt.prepare(net, example, 2, calibration_inputs=[example.numpy()] * 2,
                          keep_float="first-last")
    try:
        kept = prepared.info["quantization"]["kept_float"]
        assert len(kept) == 2 and kept[0] != kept[1]
        assert prepared.info["layers"]["float_layer_types"].get("Convolution (f32)") == 2
    finally:
        prepared.cleanup()
    with pytest.raises(ValueError, match="INT8 option"):
        runtimes.get("openvino-fp32").prepare(net, example, 2, keep_float="last")


def test_openvino_int8_leaves_the_named_convolutions_in_float():
    pytest.importorskip("openvino")
    _in_fresh_process(_int8_keeps_named_convolutions)
