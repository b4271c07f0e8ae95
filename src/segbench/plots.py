"""Trade-off plots drawn from records: a table of numbers hides the choice a user is making.

Only ok, full-run records are drawn; plots are regenerated with the README tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from segbench import fields  # noqa: E402
from segbench.analysis import is_weights_check  # noqa: E402
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
    return fields.display(r)


# Markers and colours: a reader names every point from the two legends ------------------------

# one marker per registered runtime (tests/test_plots.py checks every registry line has one)
RUNTIME_MARKERS = {"eager": "o", "compile": "v", "compile-bf16": "^", "compile-int8": "<",
                   "ort-fp32": "s", "ort-int8": "D", "openvino-fp32": "P",
                   "openvino-bf16": "X", "openvino-int8": "*"}
EXTRA_MARKERS = ("h", "p", "8", ">", "d", "H")


def runtime_marker(runtime: str) -> str:
    if runtime in RUNTIME_MARKERS:
        return RUNTIME_MARKERS[runtime]
    return EXTRA_MARKERS[sum(map(ord, runtime)) % len(EXTRA_MARKERS)]


def network_colours(names: Sequence[str]) -> dict[str, tuple]:
    """A colour per network, stable for a given set of names (sorted). Beyond ten networks
    the dark tab20 shades come first and the light ones after, so neighbours in the legend
    are never a dark/light pair of one hue."""
    names = sorted(set(names))
    if len(names) <= 10:
        palette = [plt.get_cmap("tab10")(i) for i in range(10)]
    else:
        tab20 = plt.get_cmap("tab20")
        palette = [tab20(i) for i in range(0, 20, 2)] + [tab20(i) for i in range(1, 20, 2)]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def network_numbers(colours: dict[str, tuple]) -> dict[str, int]:
    """The number written beside each point of a network, as listed in the legend."""
    return {name: i for i, name in enumerate(colours, 1)}


LABEL_FONT = 8  # points: legible when a figure is shown at about 80 % of its size


def dark(colour: tuple) -> tuple:
    """A shade of ``colour`` that stays readable as text (light tab20 shades do not)."""
    return tuple(c * 0.65 for c in colour[:3])


def place_labels(ax: Any, items: Sequence[tuple[float, float, str, tuple]],
                 fontsize: float = LABEL_FONT, bold: bool = False,
                 markers: Sequence[tuple[float, float, float]] = ()) -> list[Any]:
    """Write each (x, y, text, colour) beside its point without covering another label or a
    marker ((x, y, radius in points)): the first free spot among right-above, right-below,
    left-above, left-below; a label equal to one already written close by (the same
    network's next point) is left out, since its colour and position already say it. Call
    after the axes' scales are set."""
    ax.get_xlim(), ax.get_ylim()  # settle autoscaled limits before reading positions
    to_px = ax.transData.transform
    scale = ax.figure.dpi / 72  # pixels per point
    width, height = 0.62 * fontsize * scale, 1.1 * fontsize * scale
    boxes: list[tuple[float, float, float, float]] = []
    for x, y, radius in markers:
        mx, my = to_px((x, y))
        r = radius * scale
        boxes.append((mx - r, my - r, mx + r, my + r))
    written: list[tuple[float, float, str, tuple]] = []
    out = []
    for x, y, text, colour in sorted(items, key=lambda item: -item[1]):
        px, py = to_px((x, y))
        if any(t == text and c == colour and abs(px - wx) < 14 * scale
               and abs(py - wy) < 1.6 * height for wx, wy, t, c in written):
            continue
        w = width * len(text)
        right, left = 5 * scale, -5 * scale - w
        spots = [(right, 1 * scale), (right, -height), (left, 1 * scale), (left, -height),
                 (right, 1.2 * height), (right, -2.2 * height)]
        for dx, dy in spots:
            box = (px + dx, py + dy, px + dx + w, py + dy + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in boxes):
                break
        else:
            dx, dy = spots[0]
            box = (px + dx, py + dy, px + dx + w, py + dy + height)
        boxes.append(box)
        written.append((px, py, text, colour))
        out.append(ax.annotate(text, (x, y), xytext=(dx / scale, dy / scale),
                               textcoords="offset points", fontsize=fontsize, color=dark(colour),
                               fontweight="bold" if bold else "normal", zorder=4))
    return out


def plain_number(value: float, _pos: int | None = None) -> str:
    """Tick text without powers of ten: 0.5, 2, 20, 300."""
    if value == 0:
        return "0"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:,.0f}" if abs(value) >= 1000 \
        else f"{value:g}"


def plain_ticks(ax: Any, axis: str = "both") -> None:
    """Plain numbers on both axes, log or linear; log axes get ticks at 1, 2, 5 per decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in ("x", "y") if axis == "both" else (axis,):
        target = getattr(ax, f"{name}axis")
        if getattr(ax, f"get_{name}scale")() == "log":
            low, high = sorted(getattr(ax, f"get_{name}lim")())
            narrow = low > 0 and high / low < 30  # under ~1.5 decades: more ticks
            subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if narrow else (1.0, 2.0, 5.0)
            target.set_major_locator(LogLocator(base=10, subs=subs))
            target.set_minor_formatter(NullFormatter())
        target.set_major_formatter(FuncFormatter(plain_number))


def legends(ax: Any, colours: dict[str, tuple], runtimes: Sequence[str],
            network_title: str = "network", numbered: bool = False) -> list[Any]:
    """Two legends outside the axes: colour (and number) = network, marker = runtime.
    Returns them, for the saved figure's bounding box."""
    from matplotlib.lines import Line2D

    numbers = network_numbers(colours)
    nets = [Line2D([], [], linestyle="", marker="o", markersize=7, color=colour,
                   label=f"{numbers[name]:>2}  {name}" if numbered else name)
            for name, colour in colours.items()]
    rts = [Line2D([], [], linestyle="", marker=runtime_marker(rt), markersize=7,
                  color="0.3", label=rt) for rt in runtimes]
    heading = Line2D([], [], linestyle="", marker="", label="runtime (marker):")
    gap = Line2D([], [], linestyle="", marker="", label=" ")
    legend = ax.legend(handles=[*nets, gap, heading, *rts], title=network_title + " (colour)",
                       fontsize=7, title_fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.01, 1.0), frameon=False, alignment="left")
    return [legend]


def mark_front(ax: Any, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Ring the Pareto-optimal points and join them with a dashed step line."""
    front = pareto_front(list(zip(xs, ys)))
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=190, facecolors="none",
               edgecolors="0.2", linewidths=1.0, zorder=2)
    if len(front) > 1:
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="0.4",
                linewidth=1.0, linestyle="--", zorder=2)


def _save(fig: Any, path: Path, extra: Sequence[Any] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the figure's own extra artists too (a suptitle): naming some replaces the default list
    shown = [*fig.get_default_bbox_extra_artists(), *extra]
    fig.savefig(path, dpi=110, bbox_inches="tight", bbox_extra_artists=shown)
    plt.close(fig)
    return path


def _dedupe(rows: Sequence[Record]) -> list[Record]:
    """One point per network x runtime: several benchmarks may time the same pair; the
    fastest record stands for it (the others differ only by run-to-run noise)."""
    best: dict[tuple[str, str, str], Record] = {}
    for r in rows:
        key = (r.family, r.model, r.runtime)
        if key not in best or r.throughput > best[key].throughput:
            best[key] = r
    return list(best.values())


def tradeoff_plot(records: Sequence[Record], x: str, path: Path, size: int = 512,
                  machine: str = "") -> Path | None:
    """Throughput against params (x="params") or GFLOPs (x="gflops") of 2D networks on
    ``size`` x ``size`` inputs (other sizes are not comparable), measured on ``machine`` (named
    in the title, so a copied image still says where its numbers come from): colour = network,
    marker = runtime, and one Pareto front over every point (which network-and-runtime
    choices are not beaten by a smaller/cheaper and faster one). None if nothing to draw."""
    rows = _dedupe([r for r in records if r.ok and r.throughput and r.family in SEG2D_FAMILIES
                    and not r.quick and not is_weights_check(r)
                    and tuple(r.shape[2:]) == (size, size)
                    and (r.params if x == "params" else r.gflops)])
    if not rows:
        return None
    colours = network_colours([_label(r) for r in rows])
    runtimes = sorted({r.runtime for r in rows})
    xs = [(r.params / 1e6 if x == "params" else r.gflops) for r in rows]
    ys = [r.throughput for r in rows]
    numbers = network_numbers(colours)
    fig, ax = plt.subplots(figsize=(8, 6))
    for r, xv, yv in zip(rows, xs, ys):
        ax.scatter([xv], [yv], color=colours[_label(r)], marker=runtime_marker(r.runtime),
                   s=46, alpha=0.9, edgecolors="black", linewidths=0.4, zorder=3)
    mark_front(ax, xs, ys)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.08, y=0.08)
    plain_ticks(ax)
    front = set(pareto_front(list(zip(xs, ys))))
    place_labels(ax, [(xv, yv, str(numbers[_label(r)]), colours[_label(r)])
                      for r, xv, yv in zip(rows, xs, ys)], bold=True,
                 markers=[(xv, yv, 7.0 if i in front else 4.0)
                          for i, (xv, yv) in enumerate(zip(xs, ys))])
    ax.set_xlabel("parameters (millions, log scale)" if x == "params"
                  else "GFLOPs per 512x512 image (log scale)")
    ax.set_ylabel("images / s, median (log scale)")
    ax.set_title(f"2D segmentation networks, {size}x{size}: throughput vs "
                 + ("size" if x == "params" else "compute")
                 + "\n(ringed: Pareto-optimal, nothing else is both "
                 + ("smaller" if x == "params" else "cheaper") + " and faster)"
                 + (f"\n{machine}" if machine else ""), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path, legends(ax, colours, runtimes, numbered=True))


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
    seconds = [sec for _, sec in rows]
    ax.set_xlim(min(seconds) / 1.3, max(seconds) * 2)  # room for the last bar's label
    plain_ticks(ax, "x")
    ax.set_xlabel("seconds per CT (log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def speed_quality_plot(records: Sequence[Record], path: Path, baseline: str = "eager",
                       machine: str = "") -> Path | None:
    """The trade-off the project exists to show: throughput against the Dice a trained
    network loses under each runtime (records scored on phantoms, i.e. the fidelity
    benchmark's: every point at the same input size). Colour = network, marker = runtime;
    the dashed line is the Pareto front (nothing both faster and closer to FP32), the grey
    band the Dice tolerance within which a runtime counts as keeping the quality."""
    from segbench.fidelity import DICE_TOLERANCE

    base = {(r.family, r.model): r.extra[fields.DICE] for r in records
            if r.runtime == baseline and r.ok and fields.DICE in r.extra}
    rows = [r for r in records if r.ok and r.throughput and not r.quick and fields.DICE in r.extra
            and (r.family, r.model) in base]
    if not rows:
        return None
    colours = network_colours([_label(r) for r in rows])
    runtimes = sorted({r.runtime for r in rows})
    # percentage points of Dice lost (> 0: worse than FP32)
    xs = [100 * (base[(r.family, r.model)] - r.extra[fields.DICE]) for r in rows]
    ys = [r.throughput for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    band = 100 * DICE_TOLERANCE
    ax.axvspan(-band, band, color="0.95", zorder=0)
    ax.axvline(0, color="0.6", linewidth=0.8, zorder=1)
    for r, xv, yv in zip(rows, xs, ys):
        ax.scatter([xv], [yv], color=colours[_label(r)], marker=runtime_marker(r.runtime),
                   s=52, alpha=0.9, edgecolors="black", linewidths=0.4, zorder=3)
    mark_front(ax, xs, ys)
    ax.set_yscale("log")
    ax.margins(y=0.1)
    pad = max(0.05, 0.08 * (max(xs) - min(xs)))
    ax.set_xlim(min(min(xs), 0) - pad, max(max(xs), 0) + pad)  # the data, not the band
    plain_ticks(ax, "y")
    size = rows[0].shape[-1]
    ax.set_xlabel("Dice lost against FP32 eager on held-out phantoms, percentage points "
                  "(right = worse)")
    ax.set_ylabel(f"images / s at {size}x{size}, median (log scale)")
    ax.set_title("Speed versus quality of trained networks under each runtime\n"
                 f"(ringed: Pareto-optimal; grey: within the {band:g}-point tolerance)"
                 + (f"\n{machine}" if machine else ""), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path, legends(ax, colours, runtimes))


def scaling_plot(records: Sequence[Record], path: Path, machine: str = "") -> Path | None:
    """Slices/s (left) and per-slice latency (right) against the threads in use (streams x
    threads per stream). Colour = network, marker = runtime; filled markers on solid lines are
    latency mode (one stream, more threads), hollow markers on dashed lines throughput mode
    (several streams), labelled streams x threads."""
    rows = [r for r in records if r.ok and r.timing and not r.quick]
    if not rows:
        return None
    colours = network_colours([_label(r) for r in rows])
    runtimes = sorted({r.runtime for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    groups: dict[tuple[str, str, bool], list[Record]] = {}
    labels: list[tuple[float, float, str, tuple]] = []  # streams x threads of parallel points
    for r in rows:
        streams = int(r.extra.get(fields.STREAMS, 1))
        groups.setdefault((_label(r), r.runtime, streams > 1), []).append(r)
    for (label, runtime, parallel), group in sorted(groups.items()):
        group.sort(key=lambda r: int(r.extra.get(fields.STREAMS, 1)) * r.threads)
        total = [int(r.extra.get(fields.STREAMS, 1)) * r.threads for r in group]
        style = dict(color=colours[label], marker=runtime_marker(runtime), markersize=7,
                     linestyle="--" if parallel else "-", linewidth=1.1,
                     markerfacecolor="none" if parallel else colours[label],
                     markeredgecolor=colours[label])
        left.plot(total, [r.throughput for r in group], **style)
        right.plot(total, [r.timing["latency_p50_ms"] for r in group], **style)
        if parallel:
            labels += [(t, r.throughput, f"{r.extra.get(fields.STREAMS, 1)}x{r.threads}",
                        colours[label]) for r, t in zip(group, total)]
    ticks = sorted({int(r.extra.get(fields.STREAMS, 1)) * r.threads for r in rows})
    for ax, ylabel in ((left, "slices / s, all streams together"),
                       (right, "latency per slice, p50 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_yscale("log")
        plain_ticks(ax)
        ax.set_xticks(ticks)
        ax.set_xlabel("threads in use (streams x threads per stream)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    place_labels(left, labels, markers=[(int(r.extra.get(fields.STREAMS, 1)) * r.threads,
                                         r.throughput, 4.0) for r in rows])
    left.set_title("Throughput (higher is better)", fontsize=10)
    right.set_title("Latency (lower is better)", fontsize=10)
    from matplotlib.lines import Line2D

    extra = legends(right, colours, runtimes)
    left.legend(handles=[Line2D([], [], color="0.3", marker="o", linestyle="-",
                                label="latency mode: 1 stream"),
                         Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                linestyle="--", label="throughput mode: S streams")],
                fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(f"Threads and streams, {rows[0].shape[-1]}x{rows[0].shape[-1]} slices"
                 + (f", {machine}" if machine else ""), fontsize=11)
    return _save(fig, path, extra)


def stage_bars_plot(rows: Sequence[tuple[str, dict[str, float]]], path: Path, title: str
                    ) -> Path | None:
    """Horizontal stacked bars: seconds per whole CT split by pipeline stage (fastest on top).

    ``rows`` are (label, {stage: seconds}); stages keep the order they first appear in.
    """
    rows = [(label, stages) for label, stages in rows if stages]
    if not rows:
        return None
    rows = sorted(rows, key=lambda item: sum(item[1].values()), reverse=True)
    names = list(dict.fromkeys(stage for _, stages in rows for stage in stages))
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    left = [0.0] * len(rows)
    for k, stage in enumerate(names):
        widths = [stages.get(stage, 0.0) for _, stages in rows]
        ax.barh([label for label, _ in rows], widths, left=left, label=stage,
                color=colours[k % len(colours)])
        left = [a + b for a, b in zip(left, widths)]
    for i, total in enumerate(left):
        ax.annotate(f"{total:.0f} s" if total >= 10 else f"{total:.1f} s", (total, i),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("seconds per CT")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    # the fastest rows are on top, so the upper right is empty: the stage key goes there
    ax.legend(title="stage", fontsize=8, title_fontsize=8, loc="upper right", frameon=False)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
