"""Trained weights are an explicit step before the cells: each distinct trained network once,
random-weight networks never, and a benchmark run asks for them before its first cell."""

import io
from types import SimpleNamespace

from segbench import weights
from segbench.models import ModelSpec


def test_each_trained_network_is_prepared_once_and_random_ones_never(monkeypatch):
    built = []
    monkeypatch.setattr(weights, "build_model", lambda spec: built.append(spec.label))
    recipe = {"train": {"steps": 2, "size": 64}}
    specs = [ModelSpec("fpn", "resnet18", 3, dict(recipe)),
             ModelSpec("fpn", "resnet18", 3, {**recipe, "path": "lowres"}),  # same weights
             ModelSpec("fpn", "resnet18", 3, {"train": {"steps": 3, "size": 64}}),
             ModelSpec("fpn", "regnetx_004", 3),  # random weights: nothing to do
             ModelSpec("3d-phantom", "totalseg-3mm", 4, {"recipe": {"steps": 1}})]
    log = io.StringIO()
    done = weights.prepare(specs, log)
    assert built == ["resnet18+fpn", "resnet18+fpn", "totalseg-3mm+3d-phantom"]
    assert [d["network"] for d in done] == built
    assert "weights [1/3] resnet18+fpn (3 classes) ..." in log.getvalue()
    assert log.getvalue().count("ready after") == 3


def test_a_run_prepares_weights_before_its_first_cell(monkeypatch, tmp_path):
    from segbench import bench, cli
    from segbench.cell import Cell
    from segbench.results import ResultsFile

    order = []
    monkeypatch.setattr(weights, "build_model", lambda spec: order.append("weights"))
    monkeypatch.setattr(bench, "run_with_retries",
                        lambda cell, opts: order.append("cell") or _record(cell))
    cell = Cell(benchmark="b", model=ModelSpec("fpn", "resnet18", 3, {"train": {"steps": 1}}),
                runtime="eager", shape=(1, 3, 64, 64), threads=1)
    opts = cli.Options(models=[], runtimes=[], size=64, batch=1, threads=1, classes=3,
                       repeats=1, quick=True, out=tmp_path, timeout=1, list=False)
    plain = SimpleNamespace(name="b", follow_up=None)
    bench.run(plain, opts, ResultsFile("b", {}), tmp_path / "b.json", [cell, cell])
    assert order == ["weights", "cell", "cell"]


def test_follow_up_cells_run_after_the_matrix_and_replace_a_record(monkeypatch, tmp_path):
    from segbench import bench, cli
    from segbench.cell import Cell
    from segbench.results import ResultsFile, load

    monkeypatch.setattr(weights, "build_model", lambda spec: None)
    ran = []
    monkeypatch.setattr(bench, "run_with_retries",
                        lambda cell, opts: ran.append(cell.submodules) or _record(cell))

    def cell(submodules=()):
        return Cell(benchmark="b", model=ModelSpec("fpn", "resnet18", 3), runtime="eager",
                    shape=(1, 3, 64, 64), threads=1, submodules=submodules)

    seen = []

    def follow_up(b, opts, records):
        seen.append([r.key for r in records])
        return [cell(submodules=("encoder",))]  # the first cell again, its encoder alone too

    other = Cell(benchmark="b", model=ModelSpec("fpn", "regnetx_004", 3), runtime="eager",
                 shape=(1, 3, 64, 64), threads=1)
    opts = cli.Options(models=[], runtimes=[], size=64, batch=1, threads=1, classes=3,
                       repeats=1, quick=True, out=tmp_path, timeout=1, list=False)
    done = bench.run(SimpleNamespace(name="b", follow_up=follow_up), opts, ResultsFile("b", {}),
                     tmp_path / "b.json", [cell(), other])
    assert ran == [(), (), ("encoder",)]
    assert seen == [[cell().key, other.key]]
    assert len(done) == 2  # the follow-up replaced the first cell's record
    assert len(load(tmp_path / "b.json", "b").records) == 2


def _record(cell):
    from segbench.results import Record

    return Record(benchmark="b", key=cell.key, model="m", runtime="eager", shape=[1],
                  batch=1, threads=1, status="failed", reason="not run")
