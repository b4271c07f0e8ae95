"""ONNX Runtime and OpenVINO backends on a tiny net: agreement with eager, INT8 that really is
integer, the precision OpenVINO really runs, failures as rows, and no files left behind."""

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from segbench import machine, runtimes
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec, build_model, make_input
from segbench.runtimes import calibration, ort
from segbench.runtimes.export import export_onnx
from segbench.worker import run_cell

CLASSES = 3
SHAPE = (1, 3, 64, 64)
THREADS = 1


@pytest.fixture(scope="module")
def tiny():
    model = build_model(ModelSpec("testing", "tiny", CLASSES))
    x = make_input(SHAPE)
    with torch.inference_mode():
        reference = model(x).numpy()
    return model, x, reference


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch) -> Path:
    """Every temporary file of the runtimes (and of ORT's quantiser) lands here."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def leftovers(scratch: Path) -> list[str]:
    """Files under the scratch directory, bar torch's own compile cache (torch.export makes
    it; the worker points it at the cell's directory through TORCHINDUCTOR_CACHE_DIR)."""
    return [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")]


@contextmanager
def prepared(name: str, model: nn.Module, x: torch.Tensor, **options):
    """Prepare, hand over, clean up, and check the cleanup left nothing behind."""
    prep = runtimes.get(name).prepare(model, x, THREADS, **options)
    scratch = Path(tempfile.gettempdir())
    try:
        assert leftovers(scratch), "intermediate files live in the scratch directory"
        yield prep
    finally:
        prep.cleanup()
    assert leftovers(scratch) == []


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.parametrize("name", ["ort-fp32", "openvino-fp32"])
def test_fp32_runtimes_match_eager(tiny, name):
    model, x, reference = tiny
    with prepared(name, model, x) as prep:
        out = runtimes.to_numpy(prep.call(x))
    assert out.shape == reference.shape
    assert max_abs(out, reference) < 1e-4
    assert prep.info["exporter"] == "torch.onnx dynamo" and prep.info["opset"] == 20
    assert prep.info["external_data"] is False
    json.dumps(prep.info)  # the record must be able to carry it


def test_ort_session_follows_the_thread_protocol():
    options = ort.session_options(threads=3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter's own
def test_legacy_exporter_is_an_option(tiny):
    model, x, reference = tiny
    with prepared("ort-fp32", model, x, exporter="legacy") as prep:
        assert max_abs(prep.call(x), reference) < 1e-4
    assert prep.info["exporter"] == "torch.onnx legacy"
    with pytest.raises(ValueError, match="dynamo, legacy"):
        runtimes.get("ort-fp32").prepare(model, x, THREADS, exporter="jit")


class TwoMaps(nn.Module):
    """Returns two feature maps, as the encoder-only models do."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.relu(self.stem(x))
        return a, self.down(a)


@pytest.mark.parametrize("name", ["ort-fp32", "openvino-fp32"])
def test_tuple_output_model(name):
    model, x = TwoMaps().eval(), make_input(SHAPE)
    with torch.inference_mode():
        reference = runtimes.to_numpy(model(x))
    with prepared(name, model, x) as prep:
        out = runtimes.to_numpy(prep.call(x))
    assert isinstance(out, list) and len(out) == 2 and prep.info["outputs"] == 2
    for got, want in zip(out, reference):
        assert got.shape == want.shape and max_abs(got, want) < 1e-4


def test_ort_int8_graph_holds_integer_weights_and_kernels(tiny, tmp_path):
    model, x, _ = tiny
    exported = export_onnx(model, x, tmp_path)
    path = ort.quantize_onnx(exported.path, tmp_path, calibration.calibration_inputs(x, 4))
    quantized = onnx.load(str(path))
    ops = {node.op_type for node in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert ort.int8_weight_count(quantized) == 3  # two convs and the transposed conv
    executed = ort.executed_report(ort.optimized_graph(path, tmp_path))
    assert executed["int8_op_types"].get("QLinearConv") == 2
    assert executed["int8_nodes"] + executed["float_nodes"] == 3


@pytest.mark.parametrize("activation", ["quint8", "qint8"])
def test_ort_int8_records_what_stayed_float(tiny, activation):
    model, x, reference = tiny
    with prepared("ort-int8", model, x, calibration=4, activation=activation) as prep:
        out = runtimes.to_numpy(prep.call(x))
    assert out.shape == reference.shape and np.isfinite(out).all()
    q = prep.info["quantization"]
    assert q["calibration"] == 4 and q["activations"] == activation
    assert q["int8_weights"] == 3
    assert q["stayed_float"] == q["executed"]["float_op_types"]
    assert q["executed"]["int8_nodes"] >= 2
    assert q["quantizer"]["quantized_nodes"] + q["quantizer"]["float_nodes"] == 3
    json.dumps(prep.info)


def test_int8_calibrates_on_explicit_inputs(tiny):
    model, x, _ = tiny
    inputs = [torch.randn(SHAPE) for _ in range(3)]
    with prepared("ort-int8", model, x, calibration_inputs=inputs) as prep:
        pass
    q = prep.info["quantization"]
    assert q["calibration"] == 3 and q["calibration_source"] == "explicit inputs"
    with pytest.raises(ValueError, match="unknown activation"):
        runtimes.get("ort-int8").prepare(model, x, THREADS, calibration=2, activation="int4")


def test_calibration_inputs_are_seeded_shaped_and_checked():
    x = torch.zeros(SHAPE)
    first, again = calibration.calibration_inputs(x, 3), calibration.calibration_inputs(x, 3)
    assert len(first) == 3 and all(a.shape == SHAPE and a.dtype == np.float32 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(calibration.calibration_inputs(x)) == calibration.DEFAULT_COUNT
    assert not np.array_equal(first[0], make_input(SHAPE).numpy())  # never the evaluation input
    explicit = [np.ones(SHAPE), torch.ones(SHAPE), np.zeros(SHAPE)]
    assert len(calibration.calibration_inputs(x, 2, explicit)) == 2
    with pytest.raises(ValueError, match="shape"):
        calibration.calibration_inputs(x, inputs=[np.ones((1, 3, 32, 32))])
    with pytest.raises(ValueError, match="at least one"):
        calibration.calibration_inputs(x, 0)


def _graph(nodes, initializers=()) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [inp], [out], list(initializers)))


def test_executed_report_follows_integer_data_flow():
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])
    model = _graph([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["a"]),
        helper.make_node("QLinearConv", ["a", "s", "z", "w", "s", "z", "s", "z"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["c"]),  # runs on uint8 data: integer
        helper.make_node("DequantizeLinear", ["c", "s", "z"], ["d"]),
        helper.make_node("HardSigmoid", ["d"], ["e"]),  # behind a dequantise: float
        helper.make_node("Reshape", ["e", "shape"], ["y"]),  # data movement: not counted
    ], [shape])
    report = ort.executed_report(model)
    assert report["int8_op_types"] == {"MaxPool": 1, "QLinearConv": 1}
    assert report["float_op_types"] == {"HardSigmoid": 1}


def test_quantizer_report_counts_ops_left_without_dequantised_inputs():
    model = _graph([
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["a"]),
        helper.make_node("Conv", ["a", "w"], ["b"]),
        helper.make_node("Resize", ["b", "", "scales"], ["y"]),
    ])
    report = ort.quantizer_report(model)
    assert report["quantized_nodes"] == 1 and report["float_op_types"] == {"Resize": 1}


def test_openvino_fp32_runs_f32_explicitly(tiny):
    model, x, _ = tiny
    with prepared("openvino-fp32", model, x) as prep:
        pass
    compiled = prep.info["compiled"]
    assert compiled["INFERENCE_PRECISION_HINT"] == "f32"
    assert compiled["INFERENCE_NUM_THREADS"] == THREADS and compiled["NUM_STREAMS"] == 1
    assert set(prep.info["layers"]["by_precision"]) == {"f32"}


@pytest.mark.skipif(not machine.has_bf16(), reason="CPU without avx512_bf16 / AMX")
def test_openvino_bf16_reports_bf16(tiny):
    model, x, reference = tiny
    with prepared("openvino-bf16", model, x) as prep:
        out = runtimes.to_numpy(prep.call(x))
    assert prep.info["compiled"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert prep.info["layers"]["by_precision"].get("bf16", 0) > 0
    assert max_abs(out, reference) < 0.1  # bf16 keeps ~3 significant digits


def test_openvino_bf16_is_skipped_without_hardware(monkeypatch):
    monkeypatch.setattr(machine, "has_bf16", lambda: False)
    assert "avx512_bf16" in runtimes.get("openvino-bf16").unavailable_reason()
    assert runtimes.get("openvino-fp32").unavailable_reason() is None


def test_openvino_int8_runs_integer_layers(tiny):
    model, x, reference = tiny
    with prepared("openvino-int8", model, x, calibration=4) as prep:
        out = runtimes.to_numpy(prep.call(x))
    assert out.shape == reference.shape and np.isfinite(out).all()
    assert prep.info["compiled"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert {"u8", "i8"} & set(prep.info["layers"]["by_precision"])
    assert prep.info["quantization"]["calibration"] == 4


def test_openvino_and_nncf_stay_offline(tmp_path):
    """Importing OpenVINO and NNCF must not try the network (their telemetry does, unless
    blocked); a forked telemetry sender would inherit the patched urlopen too."""
    log = tmp_path / "urlopen.log"
    script = (
        "import urllib.request, sys\n"
        f"def record(*a, **k):\n    open({str(log)!r}, 'a').write('called\\n')\n"
        "    raise OSError('offline')\n"
        "urllib.request.urlopen = record\n"
        "import segbench.runtimes.openvino_rt as rt\n"
        "import nncf\n"
        "assert rt.TELEMETRY_BLOCKED\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENVINO_TELEMETRY_OPT_OUT"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    assert not log.exists()


def cell(name: str, runtime: str) -> Cell:
    return Cell(benchmark="t", model=ModelSpec("testing", name, classes=2), runtime=runtime,
                shape=(1, 3, 32, 32), threads=THREADS, protocol=Protocol.smoke(repeats=1))


@pytest.mark.parametrize("runtime", ["ort-fp32", "openvino-fp32"])
def test_export_failure_is_a_row_naming_its_stage(runtime, scratch):
    failed = run_cell(cell("noexport", runtime))
    assert failed.status == "failed"
    assert failed.reason.startswith("runtime: StageFailed: onnx export (dynamo): ")
    assert "i0" in failed.reason and "\n" not in failed.reason
    assert leftovers(scratch) == []  # the failed export left nothing behind
    ok = run_cell(cell("tiny", runtime))
    assert ok.status == "ok", ok.reason
    assert ok.fidelity and ok.runtime_info["exporter"] == "torch.onnx dynamo"
    assert leftovers(scratch) == []
