"""Trade-off plots drawn from records: a table of numbers hides the choice a user is making.

Only ok, full-run records are drawn; plots are regenerated with the README tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from segbench.results import Record  # noqa: E402

SEG2D_FAMILIES = ("fpn", "unet", "smp-fpn", "smp-unet")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not beaten by another with lower-or-equal cost and higher-or-equal
    throughput (x = cost to minimise, y = throughput to maximise), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _label(r: Record) -> str:
    return r.extra.get("display", r.model)


def tradeoff_plot(records: Sequence[Record], x: str, path: Path, size: int = 512
                  ) -> Path | None:
    """Throughput against params (x="params") or GFLOPs (x="gflops") of 2D networks on
    ``size`` x ``size`` inputs (other sizes are not comparable), one colour per runtime, the
    Pareto front of each runtime drawn as a line. Returns None if there is nothing to draw."""
    rows = [r for r in records if r.ok and r.throughput and r.family in SEG2D_FAMILIES
            and not r.quick and tuple(r.shape[2:]) == (size, size)
            and (r.params if x == "params" else r.gflops)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for runtime in sorted({r.runtime for r in rows}):
        group = [r for r in rows if r.runtime == runtime]
        xs = [(r.params / 1e6 if x == "params" else r.gflops) for r in group]
        ys = [r.throughput for r in group]
        points = ax.scatter(xs, ys, label=runtime, alpha=0.8)
        front = pareto_front(list(zip(xs, ys)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color=points.get_facecolor()[0],
                linewidth=1.2, alpha=0.7)
        for i in front:
            ax.annotate(_label(group[i]), (xs[i], ys[i]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (M, log)" if x == "params" else "GFLOPs per image (log)")
    ax.set_ylabel("images / s (median)")
    ax.set_title("2D segmentation networks, 512x512: throughput vs "
                 + ("size" if x == "params" else "compute") + " (lines: Pareto front)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ct_seconds_plot(rows: Sequence[tuple[str, float]], path: Path, title: str) -> Path | None:
    """Horizontal bars: seconds per whole CT for each method (fastest on top)."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda item: item[1], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ax.barh([name for name, _ in rows], [sec for _, sec in rows], color="#4c72b0")
    for i, (_, sec) in enumerate(rows):
        ax.annotate(f"{sec:.0f} s", (sec, i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per CT (log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
