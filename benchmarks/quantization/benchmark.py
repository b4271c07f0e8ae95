"""Encoder + FPN under every runtime and precision: for which encoders does INT8 pay on this CPU,
and at what fidelity?

Each model is run under PyTorch eager FP32 (the reference), ONNX Runtime FP32 and static INT8
(QDQ, per-channel weights, calibrated), and OpenVINO FP32, bf16 and INT8 (NNCF), all with the
same threads. Every non-reference row is compared with FP32 eager on the same input; the row
marked **best** is the fastest runtime for that model. Where the fidelity benchmark has trained
the same network, its Dice drop on held-out phantoms is shown too.
"""

from segbench import report, runtimes
from segbench.bench import Benchmark, main


def add_arguments(parser):
    parser.add_argument("--calibration", type=int, default=None,
                        help="INT8 calibration inputs (default 32; --quick 8)")
    parser.add_argument("--activation", choices=["quint8", "qint8"], default="quint8",
                        help="ONNX Runtime INT8 activation type (default quint8)")


def make_cells(bench, opts):
    """The model x runtime matrix; INT8 runtimes get the calibration settings they declare."""
    wanted = {"calibration": opts.extra["calibration"] or (8 if opts.quick else 32),
              "activation": opts.extra["activation"]}
    cells = bench.default_cells(opts)
    for cell in cells:
        if runtimes.get(cell.runtime).precision == "int8":
            cell.runtime_options = runtimes.accepted(cell.runtime, wanted)
    return cells


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
    runtimes=["eager", "ort-fp32", "ort-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"],
    quick_runtimes=["eager", "ort-fp32", "ort-int8"],
    add_arguments=add_arguments,
    cells=make_cells,
    tables=tables,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
