"""The 3D champion: TotalSegmentator --fast's network given the search the 2D champion got.

Each row is one whole-CT loop (HU volume in, uint8 labels on the CT's grid out) on a 512x512x280
phantom CT (``--input`` your own NIfTI), staged like the champion's search: runtimes at the
tool's settings, one tile over the whole grid, accumulation and argmax placement, runtime
options; every row scored by Dice against the FP32 eager labels of the tool's settings. In the
same run: the 2D champion, peak probes per precision, and with ``--peers`` the real
TotalSegmentator --fast --ml as shipped. The 3D champion is the fastest row within 0.01 Dice.
"""

import argparse

from segbench.bench import Benchmark, main
from segbench.benchmarks.champion_3d import plan
from segbench.benchmarks.whole_ct.plan import CELL_TIMEOUT, nifti_argument
from segbench.peers import whole_ct as peers
from segbench.views.registry import VIEWS

PEER_CELLS = (("fast", True),)  # the command the 5x target is set against


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=nifti_argument, default=None, metavar="PATH",
                        help="a CT in NIfTI (.nii/.nii.gz) (default: the phantom CT)")
    parser.set_defaults(timeout=CELL_TIMEOUT)
    peers.add_arguments(parser)  # --peers: the real TotalSegmentator --fast --ml beside it


BENCHMARK = Benchmark(
    view=VIEWS["champion_3d"],
    families=["3d"],
    models=["search"],
    quick_models=["search"],
    runtimes=list(dict.fromkeys(plan.RUNTIMES + plan.PROBE_RUNTIMES)),
    quick_runtimes=list(plan.QUICK_RUNTIMES),
    valid_models=["search"],
    add_arguments=add_arguments,
    cells=plan.make_cells,
    extra_rows=lambda bench, opts, results: peers.rows(bench, opts, results, PEER_CELLS),
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
