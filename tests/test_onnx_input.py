"""A user's ONNX segmentation network as input (issue 25, part 2): the file's checks, its
windowing and slice size, and tiny ONNX files through the slice-wise whole-CT pipeline under
ONNX Runtime and OpenVINO (labels compared, never times)."""

import warnings
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from segbench import runtimes, scenarios
from segbench.catalogue import Pipeline
from segbench.cli import UsageError, _Parser
from segbench.measure import Protocol, StageClock
from segbench.models import build_model
from segbench.models import onnx_file as family
from segbench.ownnet.onnx_file import (
    add_onnx_arguments,
    check_onnx,
    default_windows,
    onnx_cells,
    onnx_pipeline,
)
from segbench.pipelines import loop, scan
from segbench.pipelines import scenario as loop_scenario
from segbench.worker import run_cell

SIZE = 32  # the tiny network's static slice size
CT_SHAPE = (16, 40, 40)  # (z, y, x): slices resized 40 -> 32 and labels back


class TinyNet(torch.nn.Module):
    """Random convolutions plus an intensity ramp, so its labels follow the image (dark: 0,
    bright: 2) instead of being one class everywhere."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1),
                                        torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
        self.register_buffer("ramp", torch.tensor([-10.0, 0.0, 10.0]).view(1, 3, 1, 1))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        return 0.1 * self.body(x) + self.ramp * (mean - 0.5)


def export(path, channels=1, dynamic_batch=True, size=SIZE, dynamic_plane=False):
    """A tiny conv net as an ONNX file: (N, channels, size, size) -> (N, 3, size, size)."""
    axes = {"x": {0: "n"}, "y": {0: "n"}} if dynamic_batch else None
    if dynamic_plane:
        axes = {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}}
    with warnings.catch_warnings():  # the legacy exporter: quick, and it names dynamic axes
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(TinyNet(channels).eval(), (torch.zeros(2, channels, size, size),),
                          str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=axes, opset_version=17)
    return str(path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return export(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def nifti_ct(tmp_path_factory):
    """A small CT as a NIfTI file (HU of a phantom), and that CT as the pipeline reads it."""
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    ct = scan.phantom_ct(CT_SHAPE, (3.0, 2.0, 2.0), seed=7, cache=None)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(ct.hu.transpose(2, 1, 0).astype(np.int16), affine), str(path))
    return str(path), scan.load_ct({"kind": "nifti", "path": str(path)})


def graph_file(path, inputs, outputs, nodes):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return str(path)


def tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def opts_for(path, quick=True, **extra):
    return SimpleNamespace(quick=quick, threads=1, extra={"onnx": path, **extra})


BENCH = SimpleNamespace(name="own_model")


# --- the file ----------------------------------------------------------------------------------

def test_a_good_file_is_read_from_its_header(tiny_onnx):
    spec = check_onnx(tiny_onnx, SIZE)
    assert spec.input_name == "x" and spec.channels == 1 and spec.batch is None
    assert spec.plane == (SIZE, SIZE) and spec.classes == 3 and spec.opset == 17
    assert spec.params >= 4 * 9 + 4 + 3 * 4 + 3


def bad_files(tmp_path):
    identity = [helper.make_node("Identity", ["x"], ["y"])]
    add = [helper.make_node("Add", ["x", "z"], ["y"])]
    out4 = [tensor("y", ["n", 3, 32, 32])]
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\x00 this is not protobuf \x13\x37" * 10)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    return {
        "no such file": str(tmp_path / "missing.onnx"),
        "not a file": str(folder),
        "not an ONNX model": str(garbage),
        "takes 2 inputs": graph_file(tmp_path / "two.onnx",
                                     [tensor("x", ["n", 1, 32, 32]),
                                      tensor("z", ["n", 1, 32, 32])], out4, add),
        "rank 4": graph_file(tmp_path / "rank3.onnx", [tensor("x", ["n", 32, 32])],
                             [tensor("y", ["n", 32, 32])], identity),
        "has 2 channels": graph_file(tmp_path / "two_channels.onnx",
                                     [tensor("x", ["n", 2, 32, 32])],
                                     [tensor("y", ["n", 2, 32, 32])], identity),
        "not the slice size 64x64": graph_file(tmp_path / "static.onnx",
                                               [tensor("x", ["n", 1, 32, 32])],
                                               [tensor("y", ["n", 1, 32, 32])], identity),
        "returns (N, classes, h, w)": graph_file(
            tmp_path / "out3.onnx", [tensor("x", ["n", 1, 32, 32])],
            [tensor("y", ["n", 32, 32])],
            [helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0)]),
        "feeds float32": graph_file(tmp_path / "int.onnx",
                                    [tensor("x", ["n", 1, 32, 32], TensorProto.INT64)],
                                    [tensor("y", ["n", 1, 32, 32], TensorProto.INT64)],
                                    identity),
    }


def test_every_bad_file_is_one_line_naming_it(tmp_path):
    for what, path in bad_files(tmp_path).items():
        with pytest.raises(UsageError) as caught:
            check_onnx(path, 64 if "slice size" in what else None)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and what in message, message
        assert "\n" not in message


def test_bad_files_and_options_are_usage_errors_at_the_command_line(tmp_path, tiny_onnx):
    parser = _Parser(prog="own_model")
    add_onnx_arguments(parser)
    garbage = bad_files(tmp_path)["not an ONNX model"]
    with pytest.raises(UsageError, match=f"argument --onnx: {garbage}: not an ONNX model"):
        parser.parse_args(["--onnx", garbage])
    with pytest.raises(UsageError, match="CENTRE,WIDTH"):
        parser.parse_args(["--onnx", tiny_onnx, "--onnx-window", "40"])
    with pytest.raises(UsageError, match="width must be positive"):
        parser.parse_args(["--onnx", tiny_onnx, "--onnx-window", "40,0"])
    ns = parser.parse_args(["--onnx", tiny_onnx, "--onnx-window", "40,400",
                            "--onnx-size", "32", "--onnx-batch", "2"])
    assert ns.onnx_window == [(40.0, 400.0)] and ns.onnx_size == 32 and ns.onnx_batch == 2
    # what only the file and the options together can tell: when the cells are made
    bench_opts = opts_for(tiny_onnx, onnx_window=[(40.0, 400.0), (50.0, 350.0)])
    with pytest.raises(UsageError, match=f"{tiny_onnx}: the network takes 1 channel"):
        onnx_cells(BENCH, bench_opts, {"kind": "phantom"})
    with pytest.raises(UsageError, match=f"{tiny_onnx}: .*not the slice size 48x48"):
        onnx_cells(BENCH, opts_for(tiny_onnx, onnx_size=48), {"kind": "phantom"})


def test_windows_size_and_batch_of_the_pipeline(tmp_path, tiny_onnx):
    spec = check_onnx(tiny_onnx)
    pipe = onnx_pipeline(spec)
    assert pipe.windows == default_windows(1) == ((0.0, 2000.0),)
    assert pipe.size == (SIZE, SIZE) and pipe.batch == 1 and pipe.input_channels == 1
    assert onnx_pipeline(spec, batch=4).batch == 4
    three = check_onnx(export(tmp_path / "rgb.onnx", channels=3, dynamic_batch=False))
    assert three.batch == 2
    assert onnx_pipeline(three, [(40, 400)]).windows == ((40.0, 400.0),) * 3
    assert onnx_pipeline(three).windows == default_windows(3) and len(default_windows(3)) == 3
    assert onnx_pipeline(three).batch == 2  # a static batch: exactly that many per call
    with pytest.raises(UsageError, match="exactly 2 slice"):
        onnx_pipeline(three, batch=3)
    # windows: clipped and scaled to [0, 1]; 40 +- 200 HU -> 0 .. 1
    x = loop.slice_batch(np.array([[[-1000.0, -160.0, 40.0, 240.0, 900.0]]]), 0, 1,
                         [(40.0, 400.0)], size=(1, 5))  # its own size: neither padded nor resized
    assert x.shape == (1, 1, 1, 5)
    np.testing.assert_allclose(x[0, 0, 0].numpy(), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_pipeline_keys_of_the_projects_own_pipelines_do_not_change():
    own = Pipeline("2d", "net", 117, batch=4)
    assert "windows" not in own.to_dict() and "size" not in own.to_dict()
    onnx_pipe = Pipeline("2d", "f.onnx", 3, windows=((40.0, 400.0),), size=(32, 32))
    data = onnx_pipe.to_dict()
    assert data["windows"] == [[40.0, 400.0]] and data["size"] == [32, 32]
    assert Pipeline.from_dict(data) == onnx_pipe


# --- the runtimes ------------------------------------------------------------------------------

def test_the_stand_in_carries_the_file_and_torch_runtimes_refuse_it(tiny_onnx):
    assert family.ONNX_FILE_ATTRIBUTE == runtimes.ONNX_FILE_ATTRIBUTE
    stand_in = family.FAMILIES["onnx-file"].build(tiny_onnx, 3)
    assert runtimes.onnx_file_of(stand_in) == tiny_onnx
    x = torch.zeros(1, 1, SIZE, SIZE)
    assert stand_in(x).shape == (1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="eager runs PyTorch modules, not ONNX files"):
        runtimes.get("eager").prepare(stand_in, x, 1)
    with pytest.raises(ValueError, match="give it as the runtime option onnx_file"):
        runtimes.get("ort-fp32").prepare(stand_in, x, 1)  # never an export of the stand-in
    assert "onnx_file" in runtimes.option_names("openvino-int8")
    assert "onnx_file" not in runtimes.option_names("compile")


def test_the_file_through_the_slice_pipeline_under_ort_and_openvino(tiny_onnx):
    ct = scan.phantom_ct(CT_SHAPE, (3.0, 2.0, 2.0), seed=3, cache=None)
    pipe = onnx_pipeline(check_onnx(tiny_onnx), [(40, 400)], batch=4)
    example = loop.slice_batch(ct.hu, 0, pipe.batch, pipe.windows, pipe.size)
    assert example.shape == (4, 1, SIZE, SIZE)
    expected = loop.run(lambda x: TinyNet()(x).detach(), ct, pipe, StageClock())
    stand_in = family.FAMILIES["onnx-file"].build(tiny_onnx, 3)
    for name in ("ort-fp32", "openvino-fp32"):
        prepared = runtimes.get(name).prepare(stand_in, example, 1, onnx_file=tiny_onnx)
        try:
            assert prepared.info["onnx_file"] == tiny_onnx
            labels = loop.run(prepared.call, ct, pipe, StageClock())
        finally:
            prepared.cleanup()
        assert labels.shape == ct.shape and labels.dtype == np.uint8
        assert loop_scenario.agreement(expected, labels) > 99.0, name
    assert set(np.unique(expected)) == {0, 2}  # labels that follow the image


def test_a_file_without_a_fixed_plane_sees_the_ct_plane_or_the_size_given(tmp_path):
    path = export(tmp_path / "any_plane.onnx", dynamic_plane=True)
    spec = check_onnx(path, 48)  # any size fits
    assert spec.plane is None
    assert onnx_pipeline(spec).size is None and onnx_pipeline(spec, size=48).size == (48, 48)
    ct = scan.phantom_ct(CT_SHAPE, (3.0, 2.0, 2.0), seed=3, cache=None)
    stand_in = family.FAMILIES["onnx-file"].build(path, 3)
    for size, plane in ((None, (64, 64)), (48, (48, 48))):  # 40 padded to 64; resized to 48
        pipe = onnx_pipeline(spec, [(40, 400)], size=size)
        example = loop.slice_batch(ct.hu, 0, pipe.batch, pipe.windows, pipe.size)
        assert tuple(example.shape[-2:]) == plane
        prepared = runtimes.get("ort-fp32").prepare(stand_in, example, 1, onnx_file=path)
        try:
            labels = loop.run(prepared.call, ct, pipe, StageClock())
        finally:
            prepared.cleanup()
        expected = loop.run(lambda x: TinyNet()(x).detach(), ct, pipe, StageClock())
        assert labels.shape == ct.shape and loop_scenario.agreement(expected, labels) > 99.0


# --- cells through the harness -----------------------------------------------------------------

def test_cells_run_in_the_worker_and_compare_with_ort_fp32(tiny_onnx, nifti_ct, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(loop_scenario, "CACHE_DIR", tmp_path)  # the reference labels
    path, _ = nifti_ct
    ct = {"kind": "nifti", "path": path}
    cells = onnx_cells(BENCH, opts_for(tiny_onnx, onnx_window=[(40.0, 400.0)]), ct,
                       runtimes=["openvino-fp32", "eager"])
    assert [c.runtime for c in cells] == ["ort-fp32", "openvino-fp32", "eager"]  # ref first
    assert cells[0].runtime_options == {"onnx_file": tiny_onnx}
    assert cells[2].runtime_options == {}  # eager declares no onnx_file
    assert cells[0].scenario["saves_reference"] and not cells[1].scenario["saves_reference"]
    assert cells[0].model.family == "onnx-file" and cells[0].model.name == tiny_onnx
    assert build_model(cells[0].model).onnx_file == tiny_onnx
    ref, ov, eager = (run_cell(replace_protocol(c)) for c in cells)
    assert ref.ok, ref.reason
    assert ref.extra["agreement_vs_eager"] == 100.0 and ref.runtime_info["onnx_file"]
    assert ov.ok, ov.reason
    assert ov.extra["agreement_vs_eager"] > 99.0 and ov.extra["dice_vs_eager"] > 0.9
    assert ov.extra["reference_runtime"] == "ort-fp32"
    assert eager.status == "failed" and "\n" not in eager.reason
    assert "runs PyTorch modules, not ONNX files" in eager.reason


def replace_protocol(cell):
    cell.protocol = Protocol(warmup_calls=0, warmup_seconds=0.0, repeats=1, repeat_seconds=0.0,
                             repeat_calls=1, quick=True)
    cell.scenario["estimate_passes"] = 0
    return cell


def test_int8_calibrates_on_slices_of_the_ct_only(tiny_onnx, nifti_ct, tmp_path,
                                                  monkeypatch):
    monkeypatch.setattr(loop_scenario, "CACHE_DIR", tmp_path)
    path, ct = nifti_ct
    cells = onnx_cells(BENCH, opts_for(tiny_onnx, onnx_batch=2),
                       {"kind": "nifti", "path": path}, runtimes=["ort-int8"])
    cell = replace_protocol(cells[1])
    assert cell.runtime == "ort-int8" and cell.runtime_options == {"onnx_file": tiny_onnx}
    pipe = Pipeline.from_dict(cell.scenario["pipeline"])
    slices = [loop.slice_batch(ct.hu, f, pipe.batch, pipe.windows, pipe.size).numpy()
              for f in range(ct.shape[0])]

    def from_the_ct(array):
        return any(np.array_equal(array, s) for s in slices)

    arrays = scenarios.get(cell).runtime_options(cell)["calibration_inputs"]
    assert arrays and all(from_the_ct(a) for a in arrays)
    # and those are what the quantiser gets
    from segbench.runtimes import ort

    seen = []
    quantize = ort.quantize_onnx

    def spy(fp32_path, directory, arrays, *args, **kwargs):
        seen.extend(arrays)
        assert str(fp32_path) == tiny_onnx  # the user's file itself, not an export
        return quantize(fp32_path, directory, arrays, *args, **kwargs)

    monkeypatch.setattr(ort, "quantize_onnx", spy)
    record = run_cell(cell)
    assert record.ok, record.reason
    assert seen and all(from_the_ct(a) for a in seen)
    assert record.runtime_info["quantization"]["calibration_source"] == "explicit inputs"
