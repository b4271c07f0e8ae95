"""Encoder + Semantic FPN (Panoptic FPN semantic branch, 128-channel pyramid), 512x512, batch 1.

How fast is each encoder once a light decoder works at 1/4 resolution, and how much of the time
is still the encoder's? The encoder share comes from timing the encoder alone in the same cell.
segmentation_models_pytorch's FPN on two of the encoders is the reference most users know.
Every network is trained on CT phantoms first and timed on a phantom slice; Dice against the
phantom truth and against FP32 eager is scored after timing. Two networks are timed once more
with random weights in the same run: speed must not depend on the weights.
"""

from segbench.bench import Benchmark, main
from segbench.views.registry import VIEWS

BENCHMARK = Benchmark(
    view=VIEWS["fpn_decoder"],
    families=["fpn"],
    models=["mobileone_s0", "mobilenetv4_conv_small", "regnetx_002", "mobilenetv3_small_100",
            "regnetx_004", "mobilenetv4_conv_medium", "repvgg_a0", "resnet18"],
    quick_models=["mobilenetv4_conv_small", "resnet18"],
    references=[("smp-fpn", ["mobilenetv4_conv_small", "resnet18"])],
    submodules=("encoder",),
    weights_check=["mobilenetv4_conv_small", "resnet18"],
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
