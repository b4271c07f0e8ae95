"""Encoder + FPN under every runtime and precision: for which encoders does INT8 pay on this CPU,
and at what fidelity?

Each model is run under PyTorch eager FP32 (the reference), ONNX Runtime FP32 and static INT8
(QDQ, per-channel weights, calibrated), and OpenVINO FP32, bf16 and INT8 (NNCF), all with the
same threads. Every network is trained on CT phantoms first; INT8 is calibrated on phantoms
of the training distribution, and after timing every runtime is scored by Dice against the
phantom truth on held-out slices, beside FP32 eager's Dice on the same slices (the drop) and
its output's agreement with FP32 on the timed slice. The row marked **best** is the fastest
runtime for that model.
"""

from segbench import runtimes
from segbench.bench import Benchmark, main
from segbench.views.registry import VIEWS

# From the registry: every runtime but the torch.compile toolchain's, in the registry's order:
# FP32 eager (the reference) and the exported-graph toolchains (ONNX Runtime, OpenVINO) at each
# of their precisions. torch.compile's runtimes (compile, compile-bf16, compile-int8) are timed
# by the champion benchmark and scored by fidelity.
RUNTIMES = [rt for rt in runtimes.names() if runtimes.toolchain_of(rt) != "compile"]


def add_arguments(parser):
    parser.add_argument("--calibration", type=int, default=None,
                        help="INT8 calibration phantoms (default 32; --quick 4)")
    parser.add_argument("--activation", choices=["quint8", "qint8"], default="quint8",
                        help="ONNX Runtime INT8 activation type (default quint8)")


def make_cells(bench, opts):
    """The model x runtime matrix; INT8 runtimes get the calibration settings they declare,
    calibrated on that many phantoms of the training distribution."""
    count = opts.extra["calibration"] or (4 if opts.quick else 32)
    wanted = {"calibration": count, "activation": opts.extra["activation"]}
    cells = bench.default_cells(opts)
    for cell in cells:
        if runtimes.get(cell.runtime).precision == "int8":
            cell.runtime_options = runtimes.accepted(cell.runtime, wanted)
            cell.scenario["calibration"] = count
    return cells


BENCHMARK = Benchmark(
    view=VIEWS["quantization"],
    families=["fpn"],
    models=["mobilenetv4_conv_small", "mobilenetv4_conv_medium", "regnetx_004", "resnet18",
            "repvgg_a0"],
    quick_models=["mobilenetv4_conv_small"],
    runtimes=RUNTIMES,
    quick_runtimes=["eager", "ort-fp32", "ort-int8"],
    add_arguments=add_arguments,
    cells=make_cells,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
