"""Every benchmark's view by name: the one home of its title, its tables and its figures.

``benchmarks/<name>/benchmark.py`` passes ``view=VIEWS[name]`` to its Benchmark; the README
and the results pages render from here without executing a script (a test checks that every
script's Benchmark carries the view registered under its name).
"""

from __future__ import annotations

from segbench import champion, tables
from segbench.benchmarks.champion_3d import view as champion_3d
from segbench.benchmarks.own_model import view as own_model
from segbench.benchmarks.this_cpu import view as this_cpu
from segbench.benchmarks.whole_ct import view as whole_ct
from segbench.realct.view import tables as real_ct_tables
from segbench.views import View, scaling, simple

ENCODER_COLUMNS = (tables.MODEL, tables.RUNTIME, tables.PARAMS_WITH_HEAD, tables.BACKBONE_PARAMS,
                   tables.GFLOPS, tables.THROUGHPUT, tables.LATENCY, tables.EFFICIENCY,
                   tables.COMPILE, tables.FIDELITY, tables.STATUS)


def _quantization_tables(view, results):
    """The runtime table; quality from the rows' own trained-weight Dice."""
    return [("", tables.runtime_table(results.records))]


_VIEWS = (
    View("2d_vs_3d", "2D slice-wise vs 3D references, per forward pass (eager FP32)",
         tables=simple.passes_tables),
    View("champion",
         "Slice -> uint8 label map: the fastest pipeline at the original recipe's quality",
         tables=champion.tables),
    View("champion_3d",
         "Whole CT: the 3D pipeline searched like the 2D champion, beside the real tool",
         tables=champion_3d.tables, tradeoff=False),
    View("combined", "FPN versus UNet on the same encoders, torch.compile + bf16 autocast",
         tables=simple.pair_tables),
    View("encoder_only", "Encoders alone (timm features_only), torch.compile + bf16 autocast",
         columns=ENCODER_COLUMNS, sort_key=tables.ok_first(tables.efficiency), trained=True),
    View("fidelity", "Dice of every runtime on networks trained on CT phantoms",
         tables=simple.fidelity_tables, plots=simple.fidelity_plots),
    View("fpn_decoder", "Encoder + Semantic FPN, torch.compile + bf16 autocast",
         columns=tables.DECODER_COLUMNS, sort_key=tables.ok_first(tables.throughput),
         trained=True),
    View("quantization", "Encoder + FPN across runtimes and precisions",
         tables=_quantization_tables, trained=True),
    View("own_model", "Your own nnU-Net model folder on this CPU: per CT and per cohort",
         tables=own_model.tables, tradeoff=False, brief=own_model.brief),
    View("real_ct", "Quality on real CT: grid ceilings and trained methods per organ",
         tables=lambda view, results: real_ct_tables(results), tradeoff=False),
    View("scaling", "Latency mode versus throughput mode: threads x parallel streams",
         tables=scaling.scaling_tables, plots=scaling.scaling_plots,
         tradeoff=False),  # thread and stream sweeps of the same networks, not a size trade-off
    # its script declares its own fields still (segbench/benchmarks/this_cpu, #24 part 1);
    # tests/test_views.py checks that they are these
    View("this_cpu", "What to use on this CPU: the pipelines that matter, one whole CT each",
         tables=this_cpu.tables, tradeoff=False),
    View("unet_decoder", "Encoder + UNet decoder, torch.compile + bf16 autocast",
         columns=tables.DECODER_COLUMNS, sort_key=tables.ok_first(tables.throughput),
         trained=True),
    View("whole_ct", "Whole CT end to end: each method's real loop under its runtimes",
         tables=whole_ct.tables, plots=whole_ct.stage_plot),
)
VIEWS: dict[str, View] = {v.name: v for v in _VIEWS}
