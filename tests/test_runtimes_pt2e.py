"""compile-int8: PT2E static quantisation (x86 inductor quantiser) compiled by inductor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segbench import runtimes
from segbench.models import make_input
from segbench.runtimes.pt2e import qdq_counts, quantize_pt2e


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 5, 1)).eval()


def test_registered_as_int8():
    assert "compile-int8" in runtimes.names()
    assert runtimes.get("compile-int8").precision == "int8"


def test_converted_graph_has_quantized_ops():
    x = make_input((1, 3, 16, 16))
    arrays = [make_input((1, 3, 16, 16), seed=s).numpy() for s in range(4)]
    converted = quantize_pt2e(_net(), x, arrays)
    counts = qdq_counts(converted)
    # every conv gets quantised input and int8 per-channel weights
    assert counts.get("quantize_per_tensor", 0) >= 3
    assert counts.get("dequantize_per_channel", 0) >= 3


def test_runs_and_stays_close_to_fp32():
    rt = runtimes.get("compile-int8")
    if rt.unavailable_reason():
        pytest.skip(rt.unavailable_reason())
    net = _net()
    x = make_input((1, 3, 16, 16))
    calibration = [make_input((1, 3, 16, 16), seed=s) for s in range(8)]
    prepared = rt.prepare(net, x, threads=1, calibration_inputs=calibration)
    with torch.no_grad():
        want = net(x)
    got = prepared.call(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    err = (got - want).abs().max() / want.abs().max()
    assert err < 0.1
    quant = prepared.info["quantization"]
    assert quant["calibration"] == 8 and quant["calibration_source"] == "explicit inputs"
    assert quant["qdq_nodes"]["dequantize_per_channel"] >= 3
