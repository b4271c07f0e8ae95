"""The champion: the fastest CT slice -> uint8 label map pipeline at the original's quality.

Every row times the complete pipeline at 512x512 (phantom slice tensor in, uint8 label map out)
and scores its Dice against the phantom truth on held-out phantoms. The original recipe
(MobileNetV4-Conv-Small + Semantic FPN 128, ONNX Runtime FP32, bilinear x4 upsample of the
logits then argmax) is the baseline row of every run. The search is staged (runtimes, output
paths, batching, FPN width, encoder; see docs/champion.md), peak probes measure this CPU's
practical GFLOP/s per precision in the same run, and the champion is the fastest row within
0.01 Dice of the original network's FP32 Dice.
"""

from dataclasses import asdict

from segbench import champion, runtimes
from segbench.bench import Benchmark, main
from segbench.models import ModelSpec
from segbench.views.registry import VIEWS

NETWORKS = [champion.network_name(champion.ORIGINAL, w) for w in (128, *champion.WIDTHS)]
NETWORKS += [champion.network_name(e, w) for e in champion.ENCODERS for w in (128, 64)]


def add_arguments(parser):
    parser.add_argument("--focus", default=None,
                        help="comma list of the runtimes searched beyond the reference path "
                             f"(default {','.join(champion.FOCUS)})")
    parser.add_argument("--eval-slices", type=int, default=None,
                        help="held-out phantoms scored per row (default 16; --quick 2)")
    parser.add_argument("--calibration", type=int, default=None,
                        help="INT8 calibration phantoms (default 16; --quick 2)")


def _settings(opts):
    return champion.Settings.make(opts.quick, opts.size, opts.extra.get("eval_slices"),
                                  opts.extra.get("calibration"))


def row_cell(bench, opts, row, settings):
    spec = ModelSpec("fpn-labels", champion.network_name(row.network, row.width), opts.classes,
                     options={"path": row.path, "train": settings.train})
    cell = bench.cell(spec, row.runtime, opts, fidelity=False,
                      scenario={"kind": "phantom_dice", "n": settings.eval_slices,
                                # calibration batches: about the same slices at any batch
                                "calibration": max(1, settings.calibration // row.batch)},
                      extra={"row": asdict(row), "tag": f"{row.stage},{row.path}"})
    cell.submodules = champion.STAGES if row.breakdown else ()
    cell.shape = (row.batch, *cell.shape[1:])
    return cell


def make_cells(bench, opts):
    settings = _settings(opts)
    focus = (opts.extra.get("focus") or ",".join(champion.FOCUS)).split(",")
    rows = champion.search(opts.quick, focus=[f for f in focus if f in opts.runtimes] or focus,
                           runtimes=opts.runtimes)
    cells = [row_cell(bench, opts, row, settings) for row in rows
             if row.is_baseline or (champion.network_name(row.network, row.width) in opts.models
                                    and row.runtime in opts.runtimes)]
    probes = ({"eager": runtimes.precision_of("eager")} if opts.quick
              else champion.PROBE_RUNTIMES)
    for runtime in probes:
        cell = bench.cell(ModelSpec("probe", champion.PROBE, opts.classes), runtime, opts,
                          fidelity=False)
        cell.runtime_options = runtimes.accepted(runtime, {"calibration": 2})
        cell.shape = settings.probe_shape
        cells.append(cell)
    return cells


def follow_up(bench, opts, records):
    """The champion's row again, timed in stages, when the search did not time it so: the
    README's breakdown needs the winner's encoder/decoder/head/upsample split."""
    row = champion.needs_breakdown(records)
    return [] if row is None else [row_cell(bench, opts, row, _settings(opts))]


BENCHMARK = Benchmark(
    view=VIEWS["champion"],
    families=["fpn-labels"],
    models=NETWORKS,
    quick_models=[champion.ORIGINAL],
    runtimes=list(champion.RUNTIMES),
    quick_runtimes=["eager", "ort-fp32"],
    quick_size=256,
    submodules=(),
    cells=make_cells,
    add_arguments=add_arguments,
    follow_up=follow_up,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
