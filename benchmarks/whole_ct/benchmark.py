"""A whole CT, end to end: HU volume in, uint8 label volume on the CT's grid out, per method
and runtime, each pipeline timed as one real loop with its stage breakdown and peak memory.

Methods: 2D slice-wise networks (the original recipe and the best 2D pipeline), TotalSegmentator
--fast (3 mm), TotalSegmentator's default (five 1.5 mm part networks: one run, counted x5),
STU-Net-S and -B; nnU-Net's defaults (step 0.5, 8x mirroring) as an estimate from measured
passes. Default CT: a 512x512x280 phantom at 0.78 x 0.78 x 1.5 mm; ``--input`` a NIfTI file.
Cells run most important first (a run cut short keeps the answer): see ``METHODS``.
"""

import argparse

from segbench.bench import Benchmark, main
from segbench.benchmarks.whole_ct import plan
from segbench.peers import whole_ct as peers
from segbench.views.registry import VIEWS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=plan.nifti_argument, default=None, metavar="PATH",
                        help="a CT in NIfTI (.nii/.nii.gz), spacing from its header "
                             "(default: the phantom CT; quality then is agreement only)")
    parser.add_argument("--loops", type=int, default=None,
                        help="timed loops per cell after the warm-up (default 1)")
    parser.set_defaults(timeout=plan.CELL_TIMEOUT)  # loops of minutes: a longer default
    peers.add_arguments(parser)  # --peers: the real TotalSegmentator beside the pipelines


BENCHMARK = Benchmark(
    view=VIEWS["whole_ct"],
    families=["3d"],
    models=[m.key for m in plan.METHODS],
    quick_models=[m.key for m in plan.METHODS if m.quick],
    runtimes=plan.ALL_RUNTIMES,
    quick_runtimes=plan.ALL_RUNTIMES,
    valid_models=[m.key for m in plan.METHODS],
    add_arguments=add_arguments,
    cells=plan.make_cells,
    extra_rows=peers.rows,  # --peers: the real TotalSegmentator, saved like the cells
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
