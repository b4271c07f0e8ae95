"""What a person watching a run sees: the line a run starts with (cells and the dry run's
estimate, networks to train first), and one progress bar each for training and for the cells
when stderr is a terminal (plain lines otherwise). No duration is asserted."""

import io
import re
import sys

import pytest
import torch

from segbench import bench, train
from segbench.models import ModelSpec, build_model


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bench(**kw):
    return bench.Benchmark(name="tinyrun", title="t", families=["testing"], models=["tiny"],
                           quick_models=["tiny"], **kw)


ARGS = ["--quick", "--threads", "1", "--size", "32", "--retry-contended", "0"]


def test_a_quick_run_starts_with_its_cells_and_the_dry_run_estimate(tmp_path, capsys):
    b = tiny_bench()
    assert bench.main(b, [*ARGS, "--out", str(tmp_path)]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("tinyrun: 1 cells; estimated duration: unknown (from ")
    assert first.endswith(".quick.json, not written yet)")
    # the second run estimates from the first one's record, exactly as --dry-run does
    assert bench.main(b, [*ARGS, "--out", str(tmp_path), "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()[-1]
    assert bench.main(b, [*ARGS, "--out", str(tmp_path)]) == 0
    again = capsys.readouterr().err.splitlines()[0]
    assert re.match(r"tinyrun: 1 cells; estimated duration: \S+ s \(from .*\.quick\.json\)$",
                    again)
    assert dry.startswith(again.removeprefix("tinyrun: ")) and dry.endswith("nothing was timed.")


def test_a_cold_cache_quick_run_says_it_trains_first_then_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path / "weights")
    b = bench.Benchmark(name="coldrun", title="t", families=["fpn"],
                        models=["mobilenetv4_conv_small"],
                        quick_models=["mobilenetv4_conv_small"], trained=True)
    argv = ["--quick", "--threads", "1", "--size", "64", "--retry-contended", "0",
            "--out", str(tmp_path)]
    assert bench.main(b, argv) == 0
    err = capsys.readouterr().err
    assert "first trains 1 network(s) missing from cache/" in err.splitlines()[0]
    assert list((tmp_path / "weights").glob("*.safetensors"))  # trained and cached
    assert bench.main(b, argv) == 0
    assert "first trains" not in capsys.readouterr().err  # found in the cache this time


def test_training_shows_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch, capsys):
    model = build_model(ModelSpec("testing", "tiny", 4))
    train.train(model, steps=3, batch=1, size=32, classes=4, log_every=1)
    assert "train step 3/3 loss" in capsys.readouterr().err  # not a terminal: lines
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    train.train(model, steps=3, batch=1, size=32, classes=4, log_every=1)
    text = screen.getvalue()
    assert "train 32 px" in text and "3/3 steps" in text and "loss" in text
    assert "train step" not in text
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    train.train(model, steps=2, batch=1, size=32, classes=4, log_every=0)
    assert quiet.getvalue() == ""


def test_the_cells_show_one_bar_on_a_terminal(tmp_path, monkeypatch):
    from segbench.results import ResultsFile

    b = tiny_bench()
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    bench.run(b, b.parse([*ARGS, "--out", str(tmp_path)]), ResultsFile("tinyrun", {}),
              tmp_path / "x.quick.json")
    text = screen.getvalue()
    assert text.startswith("tinyrun: 1 cells; estimated duration")
    assert "1/1 cells" in text and "[1/1] tiny | eager: ok" in text
