"""2D slice-wise networks against the 3D references, per forward pass (the originals' comparison).

One 512x512 slice through a 2D network against one 128x128x64 patch (four slices' worth of
voxels) through TotalSegmentator's nnU-Net and STU-Net, under PyTorch eager FP32, the fair
baseline. What a whole CT costs is not a pass count times a pass: the whole_ct benchmark times
every method's complete pipeline as a real loop, so this benchmark no longer estimates it
(the README shows one per-CT answer, the measured one).
"""

from segbench import catalogue
from segbench.bench import Benchmark, main
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import DEFAULT_CLASSES, ModelSpec
from segbench.models.nets3d import true_outputs
from segbench.views.registry import VIEWS
from segbench.views.simple import PATCH_3D as PATCH

MODELS_2D = ["mobilenetv4_conv_small+fpn", "mobilenetv4_conv_small+unet",
             "mobilenetv4_conv_medium+fpn", "resnet18+fpn"]
MODELS_3D = catalogue.networks_3d()  # the 3D methods' networks, each once


def make_cells(bench: Benchmark, opts) -> list[Cell]:
    base = bench.protocol(opts)
    slow = base if opts.quick else Protocol.slow_passes(min(opts.repeats, 3))
    cells = []
    for runtime in opts.runtimes:
        for label in opts.models:  # one pass per model
            shipped = true_outputs(label)  # the --fast network has 118 outputs, not 117
            classes = shipped[0] if len(shipped) == 1 and opts.classes == DEFAULT_CLASSES \
                else opts.classes
            spec = ModelSpec.from_label(label, classes)
            is_3d = spec.family == "3d"
            spatial = PATCH if is_3d else (opts.size, opts.size)
            cells.append(Cell(benchmark=bench.name, model=spec, runtime=runtime,
                              shape=(1 if is_3d else opts.batch, 1 if is_3d else 3, *spatial),
                              threads=opts.threads, protocol=slow if is_3d else base))
    return cells


BENCHMARK = Benchmark(
    view=VIEWS["2d_vs_3d"],
    families=["fpn", "unet", "3d"],
    models=MODELS_2D + MODELS_3D,
    quick_models=["mobilenetv4_conv_small+fpn", "stunet-s"],
    runtimes=["eager"],
    quick_runtimes=["eager"],
    quick_size=512,
    valid_models=MODELS_2D + MODELS_3D + ["mobilenetv3_small_100+unet", "mobileone_s0+unet",
                                          "regnetx_002+unet", "resnet18+unet", "stunet-l",
                                          "stunet-h"],
    cells=make_cells,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
