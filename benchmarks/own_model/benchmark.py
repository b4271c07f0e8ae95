"""Your own network on your CPU: an nnU-Net v2 model folder (or an ONNX file) as whole-CT
pipelines.

nnU-Net's own ``nnUNetPredictor`` (the reference) and ``nnUNetv2_predict_from_modelfolder``
as shipped, beside the project's loop around the folder's network under each runtime, on one
CT (``--input FILE``) or a cohort (``--input FOLDER``: the best pipeline over every CT, network
loaded once, with and without reading the next CT during the current one; with ``--peers`` the
real TotalSegmentator once per CT). Every row is scored by Dice against the predictor's labels;
a pipeline's speed counts at Dice >= 0.99. ``--onnx FILE`` runs a 2D ONNX network slice-wise
under ONNX Runtime and OpenVINO (FP32, bf16, INT8), scored against its own ONNX Runtime FP32
labels. See docs/own_model.md.
"""

import argparse

from segbench.bench import Benchmark, main
from segbench.benchmarks.own_model import plan
from segbench.ownnet.onnx_file import add_onnx_arguments
from segbench.peers import nnunet_cli
from segbench.peers import whole_ct as peers
from segbench.views.registry import VIEWS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    plan.add_arguments(parser)
    add_onnx_arguments(parser)  # --onnx FILE: a 2D network run slice-wise instead (or too)
    parser.add_argument("--no-commands", action="store_true",
                        help=f"skip the {nnunet_cli.COMMAND} rows")
    peers.add_flag(parser, "also run the real TotalSegmentator --fast --ml once per CT of "
                           "the cohort (planted random weights)")


BENCHMARK = Benchmark(
    view=VIEWS["own_model"],
    families=["nnunet-folder"],
    models=["folder"],
    quick_models=["folder"],
    runtimes=list(plan.RUNTIMES),
    quick_runtimes=list(plan.QUICK_RUNTIMES),
    valid_models=["folder"],
    add_arguments=add_arguments,
    cells=plan.make_cells,
    follow_up=plan.cohort_cells,
    extra_rows=nnunet_cli.rows,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
