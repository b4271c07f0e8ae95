"""Encoders alone: timm backbones (features_only) at 512x512, batch 1.

Which backbone gives the most images per second per parameter on this CPU? Rows are sorted by
efficiency (img/s per million backbone parameters), as in the original encoder table. Each
encoder carries the weights it learned inside a Semantic FPN trained on CT phantoms and is fed
a phantom slice, so the feature SQNR against FP32 is that of a trained encoder.
"""

from segbench.bench import Benchmark, main
from segbench.models.encoders import ENCODERS
from segbench.views.registry import VIEWS

BENCHMARK = Benchmark(
    view=VIEWS["encoder_only"],
    families=["encoder"],
    models=list(ENCODERS),
    quick_models=["mobileone_s0", "mobilenetv4_conv_small", "resnet18"],
    runtimes=["compile-bf16"],
    quick_runtimes=["eager"],
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
