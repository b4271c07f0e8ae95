"""2D slice-wise networks against the 3D references, per forward pass and per whole CT.

Table 1 repeats the originals' comparison: one 512x512 slice through a 2D network against one
128x128x64 patch (four slices' worth of voxels) through TotalSegmentator's nnU-Net and STU-Net.
Table 2 answers the real question: seconds to segment a whole CT (512x512x280 at 0.78 x 0.78 x
1.5 mm) the way each tool does it, from a measured pass of each input shape times the passes the
method needs; a measured run of the real tiled loop on TotalSegmentator --fast's whole 3 mm grid
checks that per-tile model. Default runtime: PyTorch eager FP32, the fair baseline.
"""

import math

from tabulate import tabulate

from segbench import ct, plots, volume
from segbench.bench import Benchmark, main
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec
from segbench.report import DASH, num

MODELS_2D = ["mobilenetv4_conv_small+fpn", "mobilenetv4_conv_small+unet",
             "mobilenetv4_conv_medium+fpn", "resnet18+fpn"]
MODELS_3D = ["totalseg-1.5mm", "totalseg-3mm", "stunet-s", "stunet-b"]
PATCH = (64, 128, 128)  # the originals' 128x128x64 patch, (z, y, x)
PRESET = ct.DEFAULT_PRESET
FAST = next(m for m in volume.METHODS_3D if m.network == "totalseg-3mm")


def make_cells(bench: Benchmark, opts) -> list[Cell]:
    base = bench.protocol(opts)
    slow = base if opts.quick else Protocol.slow_passes(min(opts.repeats, 3))
    wanted: dict[str, Cell] = {}  # by cell key: a pass two tables need runs once

    def add(spec: ModelSpec, spatial: tuple[int, ...], protocol: Protocol | None = None,
            **kw) -> None:
        is_3d = spec.family == "3d"
        cell = Cell(benchmark=bench.name, model=spec, runtime=runtime,
                    shape=(1 if is_3d else opts.batch, 1 if is_3d else 3, *spatial),
                    threads=opts.threads, protocol=protocol or (slow if is_3d else base),
                    memory_guard=is_3d, **kw)
        wanted.setdefault(cell.key, cell)

    for runtime in opts.runtimes:
        for label in opts.models:  # table 1: one pass per model
            spec = ModelSpec.from_label(label, opts.classes)
            add(spec, PATCH if spec.family == "3d" else (opts.size, opts.size))
        for method in ct.methods_for(opts.models):  # table 2: the pass each method repeats
            need = ct.method_pass(method, PRESET, opts.classes)
            add(need.spec, need.spatial)
        if FAST.network in opts.models and not opts.quick:  # the tiled-loop check
            grid = volume.resampled_shape(PRESET, FAST.spacing_mm)
            tiles = volume.tile_count(grid, FAST.patch, FAST.step)
            add(ModelSpec.from_label(FAST.network, opts.classes), FAST.patch,
                protocol=Protocol(warmup_calls=1, warmup_seconds=0, repeats=2,
                                  repeat_seconds=0, repeat_calls=1),
                scenario={"kind": "sliding_window", "volume": [1, *grid],
                          "patch": list(FAST.patch), "step": FAST.step, "mirror": False},
                extra={"loop": True, "volume": [1, *grid], "passes": tiles}, fidelity=False)
    return list(wanted.values())


def ct_plot(results, out):
    rows = [(row["method"], row["seconds_per_ct"]) for row in ct.rows_for(results.records, "eager", PRESET)
            if row["seconds_per_ct"]]
    return [plots.ct_seconds_plot(rows, out / "ct_seconds.png",
                                  f"Network seconds per CT ({PRESET.name}), eager FP32, "
                                  f"{results.machine.get('physical_cores', '?')} cores")]


def tables(bench: Benchmark, results) -> list[tuple[str, str]]:
    records = results.records
    out = []
    patch_rows = [ct.patch_row(r) for r in records if not r.extra.get("loop")
                  and (r.family != "3d" or tuple(r.shape[2:]) == PATCH)
                  and (r.family == "3d" or r.shape[2] == r.shape[3])]
    out.append(("Per forward pass (the originals' comparison)", tabulate(
        patch_rows, headers=["model", "type", "params", "input", "ms / pass (p50)",
                             "512x512-slice equivalents / s", "equiv/s per M params", "status"],
        tablefmt="github", disable_numparse=True)))
    for runtime in sorted({r.runtime for r in records}):
        rows = ct.rows_for(records, runtime, PRESET)
        best_2d = min((row["seconds_per_ct"] for row in rows
                       if row["slice_wise"] and row["seconds_per_ct"]), default=None)
        table = [[row["method"], row["network"], row["per_network"], row["passes"],
                  ct.fmt_seconds(row["seconds_per_pass"]), ct.fmt_seconds(row["seconds_per_ct"]),
                  num(row["seconds_per_ct"] / best_2d, 1) + "x"
                  if best_2d and row["seconds_per_ct"] else DASH,
                  ct.fmt_bytes(row["memory"]), row["assumptions"], row["status"]]
                 for row in sorted(rows, key=lambda row: row["seconds_per_ct"] or math.inf)]
        out.append((f"Per whole CT ({PRESET.name}), {runtime}", tabulate(
            table, headers=["method", "network", "tiles or slices per network", "forward passes",
                            "s / pass", "s / CT", "vs best 2D", "peak memory", "assumptions",
                            "status"], tablefmt="github", disable_numparse=True)))
        checks = ct.loop_check(records, runtime)
        if checks:
            out.append(("Check: measured tiled loop vs tiles x measured s / tile", tabulate(
                [[c["network"], c["volume"], c["tiles"], ct.fmt_seconds(c["measured"]),
                  ct.fmt_seconds(c["predicted"]), num(c["ratio"], 2), c["status"]]
                 for c in checks],
                headers=["network", "volume", "tiles", "measured loop (s)", "tiles x s / tile",
                         "ratio", "status"], tablefmt="github", disable_numparse=True)))
    return out


BENCHMARK = Benchmark(
    name="2d_vs_3d",
    title="2D slice-wise vs 3D references, per pass and per whole CT (eager FP32)",
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
    plots=ct_plot,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
