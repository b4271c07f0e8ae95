"""Fidelity on trained weights: Dice against ground truth for every runtime and precision.

Random weights give near-tied logits, so speed tables can only say how far a runtime's output
is from FP32, not what that costs a segmentation. Here each 2D network is first trained from
random init on synthetic CT phantoms (a fixed, seeded budget; weights cached in cache/weights,
reproducible, never committed), then every runtime segments the same held-out phantoms and is
scored by mean organ Dice against the phantom labels. INT8 calibration uses the calibration
split (the training distribution), never the evaluation phantoms.
"""

from segbench import runtimes
from segbench.bench import Benchmark, main
from segbench.models import ModelSpec
from segbench.views.registry import VIEWS

MODELS = ["mobilenetv4_conv_small+fpn", "resnet18+fpn", "repvgg_a0+fpn", "regnetx_004+fpn",
          "mobilenetv4_conv_small+unet"]
# From the registry: the FP32 reference, the FP32 ONNX export (ort-fp32: what exporting alone
# does to the labels, the graph ort-int8 quantises) and every runtime of a lower precision, in
# the registry's order. Another FP32 runtime repeats what these two show.
EXPORT_FP32 = "ort-fp32"
RUNTIMES = [rt for rt in runtimes.names()
            if runtimes.precision_of(rt) != "fp32" or rt in (runtimes.REFERENCE, EXPORT_FP32)]


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    parser.add_argument("--eval-slices", type=int, default=None,
                        help="held-out phantoms scored (default 32)")
    parser.add_argument("--calibration", type=int, default=None,
                        help="INT8 calibration phantoms (default 32)")


def make_cells(bench, opts):
    quick = opts.quick
    steps = opts.extra.get("steps") or (20 if quick else 300)
    recipe = {"steps": steps, "batch": 8, "size": opts.size, "lr": 3e-3, "seed": 0}
    scenario = {"kind": "phantom_dice", "n": opts.extra.get("eval_slices") or (8 if quick else 32),
                "calibration": opts.extra.get("calibration") or (4 if quick else 32)}
    cells = []
    for label in opts.models:
        spec = ModelSpec.from_label(label, opts.classes, default_family="fpn")
        spec.options["train"] = recipe
        for runtime in opts.runtimes:
            cells.append(bench.cell(spec, runtime, opts, scenario=dict(scenario)))
    return cells


BENCHMARK = Benchmark(
    view=VIEWS["fidelity"],
    families=["fpn", "unet"],
    models=MODELS,
    quick_models=["mobilenetv4_conv_small+fpn"],
    valid_models=[f"{e}+{d}" for e in ("mobilenetv4_conv_small", "mobilenetv4_conv_medium",
                                       "resnet18", "repvgg_a0", "regnetx_004", "mobileone_s0",
                                       "regnetx_002", "mobilenetv3_small_100")
                  for d in ("fpn", "unet")],
    runtimes=RUNTIMES,
    quick_runtimes=["eager", "ort-int8"],
    size=128,
    quick_size=64,
    classes=9,  # 8 phantom organs + background
    add_arguments=add_arguments,
    cells=make_cells,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
