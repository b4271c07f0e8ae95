"""Encoder + UNet decoder (all five levels, decoder channels 256/128/64/32), 512x512, batch 1.

The UNet concatenates every skip and runs two 3x3 convs per level, up to 1/2 resolution: more
capacity for fine structures than the FPN, at a price this table measures. The encoder share
comes from timing the encoder alone in the same cell; segmentation_models_pytorch's Unet on two
of the encoders is the reference. Every network is trained on CT phantoms first; Dice against
the phantom truth and against FP32 eager is scored after timing.
"""

from segbench.bench import Benchmark, main
from segbench.views.registry import VIEWS

BENCHMARK = Benchmark(
    view=VIEWS["unet_decoder"],
    families=["unet"],
    models=["mobilenetv3_small_100", "mobilenetv4_conv_small", "mobileone_s0", "regnetx_002",
            "mobilenetv4_conv_medium", "resnet18"],
    quick_models=["mobilenetv4_conv_small", "resnet18"],
    references=[("smp-unet", ["mobilenetv4_conv_small", "resnet18"])],
    submodules=("encoder",),
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
