"""What to use on this CPU, in minutes: seconds per whole CT and per slice of the pipelines that
matter (the original 2D recipe, the 2D champion, TotalSegmentator --fast's 3D network under its
best runtime), each timed once on a 512x512x280 phantom CT with random weights (nothing to
train), beside the quality that the whole_ct (phantom) and real_ct (real CT) runs measured.

    uv run benchmarks/this_cpu/benchmark.py          # about 5-8 minutes on 2 cores, cold

The long benchmarks (champion, whole_ct, real_ct, ...) are what this one quotes and picks from.
"""

from segbench import runtimes
from segbench.bench import Benchmark, main
from segbench.benchmarks.this_cpu import plan, view


def add_arguments(parser):
    parser.add_argument("--input", type=plan.nifti_argument, default=None, metavar="PATH",
                        help="a CT in NIfTI (.nii/.nii.gz) instead of the phantom CT")


BENCHMARK = Benchmark(
    name=plan.NAME,
    title="What to use on this CPU: the pipelines that matter, one whole CT each",
    families=["3d"],
    models=list(plan.KEYS),
    quick_models=list(plan.KEYS),
    runtimes=runtimes.names(),
    quick_runtimes=[plan.QUICK_RUNTIME],
    valid_models=list(plan.KEYS),
    add_arguments=add_arguments,
    cells=plan.make_cells,
    tables=view.tables,
    tradeoff=False,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
