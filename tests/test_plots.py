"""Plots people can read: plain tick numbers, a marker per runtime and a colour per network,
one Pareto front, and each figure drawn from records (no timing anywhere)."""

import matplotlib.pyplot as plt
import pytest

from segbench import plots
from segbench.results import Record


def record(model, runtime, tp, family="fpn", size=512, **kw):
    return Record(benchmark="b", key=f"{model}|{runtime}|{kw.get('threads', 1)}|"
                  f"{kw.get('extra', {}).get('streams', 1)}", model=model, runtime=runtime,
                  shape=[1, 3, size, size], batch=1, threads=kw.pop("threads", 1),
                  family=family, params=kw.pop("params", 2_000_000),
                  gflops=kw.pop("gflops", 10.0),
                  timing={"throughput": tp, "latency_p50_ms": 1000 / tp}, **kw)


@pytest.mark.parametrize("value, text", [(20, "20"), (2, "2"), (0.5, "0.5"), (1500, "1,500"),
                                         (0, "0"), (150, "150")])
def test_ticks_are_plain_numbers(value, text):
    assert plots.plain_number(value) == text


def test_pareto_front_keeps_only_unbeaten_points():
    points = [(1, 10), (2, 5), (3, 20), (4, 15), (0.5, 1)]
    assert plots.pareto_front(points) == [4, 0, 2]


def test_every_runtime_has_its_own_marker_and_every_network_its_colour():
    known = list(plots.RUNTIME_MARKERS)
    assert len({plots.runtime_marker(rt) for rt in known}) == len(known)
    colours = plots.network_colours([f"net{i}" for i in range(18)])
    assert len(set(colours.values())) == 18


def test_tradeoff_plot_labels_every_point(tmp_path, monkeypatch):
    rows = [record("a+fpn", "eager", 5.0, params=1_000_000),
            record("a+fpn", "ort-fp32", 8.0, params=1_000_000),
            record("b+fpn", "eager", 9.0, params=3_000_000),
            record("c+fpn", "eager", 7.0, size=128)]  # another size: not drawn
    seen = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, extra=(): seen.update(
        fig=fig, extra=extra) or path)
    path = plots.tradeoff_plot(rows, "params", tmp_path / "t.png", machine="Fake CPU, 2 cores")
    ax = seen["fig"].axes[0]
    assert ax.get_title().endswith("\nFake CPU, 2 cores")  # a copied image says its machine
    numbers = sorted(t.get_text() for t in ax.texts)
    assert numbers == ["1", "1", "2"]  # network a twice (two runtimes), b once
    labels = [t.get_text() for t in seen["extra"][0].get_texts()]
    assert any("1  a+fpn" in label for label in labels) and "ort-fp32" in labels
    assert all("^" not in t.get_text() for t in ax.get_yticklabels())
    plt.close(seen["fig"])
    assert path == tmp_path / "t.png"


def test_speed_quality_and_scaling_plots_draw_files(tmp_path):
    fid = [record("a+fpn", "eager", 50.0, size=128, extra={"dice": 0.90}),
           record("a+fpn", "ort-int8", 150.0, size=128, extra={"dice": 0.89}),
           record("b+fpn", "eager", 40.0, size=128, extra={"dice": 0.93})]
    assert plots.speed_quality_plot(fid, tmp_path / "sq.png").stat().st_size > 0
    assert plots.speed_quality_plot(fid[:0], tmp_path / "none.png") is None
    scaling = [record("a+fpn", "ort-fp32", 10.0, threads=1),
               record("a+fpn", "ort-fp32", 18.0, threads=2),
               record("a+fpn", "ort-fp32", 19.0, threads=1, extra={"streams": 2})]
    assert plots.scaling_plot(scaling, tmp_path / "s.png").stat().st_size > 0


def _boxes(fig, texts):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def test_point_labels_never_cover_each_other_and_a_network_is_not_repeated_close_by():
    fig, ax = plt.subplots(figsize=(4, 3))
    points = [(1.0, 10.0), (1.0, 10.05), (1.02, 10.1), (1.01, 10.0), (3.0, 5.0)]
    ax.scatter(*zip(*points))
    colours = [(0.1, 0.2, 0.7), (0.1, 0.2, 0.7), (0.7, 0.1, 0.1), (0.1, 0.6, 0.1),
               (0.1, 0.2, 0.7)]
    texts = ["1", "1", "2", "3", "1"]
    written = plots.place_labels(ax, [(x, y, t, c) for (x, y), t, c
                                      in zip(points, texts, colours)])
    # network 1's second point sits on its first: one label; far away it is labelled again
    assert sorted(t.get_text() for t in written) == ["1", "1", "2", "3"]
    boxes = _boxes(fig, written)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    plt.close(fig)


def test_every_plot_title_names_its_machine(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, extra=(): seen.update(fig=fig) or path)
    fid = [record("a+fpn", "eager", 50.0, size=128, extra={"dice": 0.90}),
           record("a+fpn", "ort-int8", 150.0, size=128, extra={"dice": 0.89})]
    plots.speed_quality_plot(fid, tmp_path / "sq.png", machine="Fake CPU, 2 cores")
    assert seen["fig"].axes[0].get_title().endswith("\nFake CPU, 2 cores")
    plt.close(seen["fig"])
    scaling = [record("a+fpn", "ort-fp32", 10.0, threads=1),
               record("a+fpn", "ort-fp32", 19.0, threads=1, extra={"streams": 2})]
    plots.scaling_plot(scaling, tmp_path / "s.png", machine="Fake CPU, 2 cores")
    assert seen["fig"]._suptitle.get_text().endswith(", Fake CPU, 2 cores")
    plt.close(seen["fig"])


def test_a_saved_figure_keeps_its_suptitle(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2])
    legend = ax.legend(["x"], loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("a title above the axes")
    seen = {}
    real = fig.savefig
    fig.savefig = lambda *a, **k: seen.update(k) or real(*a, **k)
    plots._save(fig, tmp_path / "f.png", [legend])
    assert fig._suptitle in seen["bbox_extra_artists"] and legend in seen["bbox_extra_artists"]


def test_every_registered_runtime_has_a_marker():
    from segbench import runtimes

    assert set(runtimes.REGISTRY) <= set(plots.RUNTIME_MARKERS)
