"""2D slice-wise networks against the 3D references, per forward pass (the originals' comparison).

One 512x512 slice through a 2D network against one 128x128x64 patch (four slices' worth of
voxels) through TotalSegmentator's nnU-Net and STU-Net, under PyTorch eager FP32, the fair
baseline. What a whole CT costs is not a pass count times a pass: the whole_ct benchmark times
every method's complete pipeline as a real loop, so this benchmark no longer estimates it
(the README shows one per-CT answer, the measured one).
"""

from tabulate import tabulate

from segbench import ct
from segbench.bench import Benchmark, main
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import DEFAULT_CLASSES, ModelSpec
from segbench.models.nets3d import true_outputs

MODELS_2D = ["mobilenetv4_conv_small+fpn", "mobilenetv4_conv_small+unet",
             "mobilenetv4_conv_medium+fpn", "resnet18+fpn"]
MODELS_3D = ["totalseg-1.5mm", "totalseg-3mm", "stunet-s", "stunet-b"]
PATCH = (64, 128, 128)  # the originals' 128x128x64 patch, (z, y, x)


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


def tables(bench: Benchmark, results) -> list[tuple[str, str]]:
    records = results.records
    patch_rows = [ct.patch_row(r) for r in records if not r.extra.get("loop")
                  and (r.family != "3d" or tuple(r.shape[2:]) == PATCH)
                  and (r.family == "3d" or r.shape[2] == r.shape[3])]
    return [("Per forward pass (the originals' comparison)", tabulate(
        patch_rows, headers=["model", "type", "params", "input", "ms / pass (p50)",
                             "512x512-slice equivalents / s", "equiv/s per M params", "status"],
        tablefmt="github", disable_numparse=True))]


BENCHMARK = Benchmark(
    name="2d_vs_3d",
    title="2D slice-wise vs 3D references, per forward pass (eager FP32)",
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
    tables=tables,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
