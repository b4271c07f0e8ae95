"""Semantic FPN and UNet side by side on the same encoders, measured in the same run.

Per encoder: how many times faster the FPN network is than the UNet one, and what the UNet's
extra parameters and FLOPs are. Both rows of a pair come from this run, so the ratio does not
mix machines or moments.
"""

from segbench.bench import Benchmark, main
from segbench.views.registry import VIEWS

BENCHMARK = Benchmark(
    view=VIEWS["combined"],
    families=["fpn", "unet"],
    models=["mobileone_s0", "mobilenetv4_conv_small", "mobilenetv4_conv_medium", "resnet18"],
    quick_models=["mobilenetv4_conv_small"],
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
