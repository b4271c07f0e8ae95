"""Quality on real CT: how much each output grid can keep against two annotators, and the 2D
original, the 2D champion and the 3D --fast network trained alike on real labelled scans,
scored per organ (Dice, NSD) under every runtime.

    uv run benchmarks/real_ct/benchmark.py --dataset DIR --observers DIR
    uv run benchmarks/real_ct/benchmark.py --quick     # phantom stand-in, seconds

See docs/real_ct.md for the data, the budget and what the numbers mean.
"""

import os

# Training budgets are CPU time; spinning OpenMP threads would count waiting as training, more
# so on a busy machine. Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from segbench.bench import Benchmark  # noqa: E402
from segbench.realct.run import main  # noqa: E402
from segbench.realct.view import tables  # noqa: E402

BENCHMARK = Benchmark(
    name="real_ct",
    title="Quality on real CT: grid ceilings and trained methods per organ",
    families=["fpn-labels"],
    models=[],
    quick_models=[],
    tradeoff=False,
    tables=lambda bench, results: tables(results),
)

if __name__ == "__main__":
    raise SystemExit(main())
