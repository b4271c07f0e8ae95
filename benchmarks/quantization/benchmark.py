"""Encoder + FPN under every runtime and precision: for which encoders does INT8 pay on this CPU,
and at what fidelity?

Each model is run under PyTorch eager FP32 (the reference), ONNX Runtime FP32 and static INT8
(QDQ, per-channel weights, calibrated), and OpenVINO FP32, bf16 and INT8 (NNCF), all with the
same threads. Every non-reference row is compared with FP32 eager on the same input; the row
marked **best** is the fastest runtime for that model. Where the fidelity benchmark has trained
the same network, its Dice drop on held-out phantoms is shown too.
"""

from segbench import report
from segbench.bench import Benchmark, main


def tables(bench, results):
    """The runtime table, with the Dice drop the fidelity benchmark measured on trained
    weights (same machine) where it has the same network and runtime."""
    fidelity = results.sibling("fidelity")
    trained = report.dice_drops(fidelity.records) if fidelity else None
    return [("", report.runtime_table(results.records, trained=trained))]


BENCHMARK = Benchmark(
    name="quantization",
    title="Encoder + FPN across runtimes and precisions",
    families=["fpn"],
    models=["mobilenetv4_conv_small", "mobilenetv4_conv_medium", "regnetx_004", "resnet18",
            "repvgg_a0"],
    quick_models=["mobilenetv4_conv_small"],
    runtimes=["eager", "compile-bf16", "ort-fp32", "ort-int8", "openvino-fp32", "openvino-bf16",
              "openvino-int8"],
    quick_runtimes=["eager", "ort-fp32", "ort-int8"],
    tables=tables,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
