"""The champion benchmark: its cell matrix, its pipelines and how a champion is picked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segbench import champion
from segbench.bench import load_script
from segbench.models import ModelSpec, build_model, make_input
from segbench.models.pipeline import split_name
from segbench.results import Record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "benchmarks" / "champion" / "benchmark.py")


def _cells(bench, argv):
    opts = bench.parse([*argv, "--dry-run"])
    return bench.make_cells(opts)


def _is_baseline(cell):
    return cell.extra.get("row", {}).get("stage") == "baseline"


@pytest.mark.parametrize("argv", [["--quick"], [], ["--runtimes", "eager"],
                                  ["--models", "resnet18", "--runtimes", "compile-int8"]])
def test_baseline_is_always_a_cell(bench, argv):
    cells = _cells(bench, argv)
    base = [c for c in cells if _is_baseline(c)]
    assert len(base) == 1
    (cell,) = base
    assert cell.runtime == "ort-fp32" and cell.shape == (1, 3, cell.shape[-1], cell.shape[-1])
    assert cell.model.name == "mobilenetv4_conv_small" and cell.model.options["path"] == "full"


def test_full_matrix_covers_the_search(bench):
    cells = _cells(bench, [])
    rows = [c.extra["row"] for c in cells if "row" in c.extra]
    assert {r["runtime"] for r in rows if r["stage"] == "runtimes"} | {"ort-fp32"} == set(
        champion.RUNTIMES)
    assert {r["path"] for r in rows} == {"full", "blocked", "lowres", "corners"}
    assert {r["batch"] for r in rows} == {1, 4, 8, 16}
    assert {r["width"] for r in rows} == {128, 96, 64}
    assert {r["network"] for r in rows} == {"mobilenetv4_conv_small", *champion.ENCODERS}
    assert all(c.shape[-1] == 512 for c in cells if "row" in c.extra)
    assert len({c.key for c in cells}) == len(cells)
    # every network has its FP32 eager full reference
    refs = {(r["network"], r["width"]) for r in rows
            if r["runtime"] == "eager" and r["path"] == "full"}
    assert refs == {(r["network"], r["width"]) for r in rows}
    assert {c.runtime for c in cells if c.model.family == "probe"} >= {"compile", "compile-int8"}


def test_pipeline_family_builds_label_maps():
    spec = ModelSpec("fpn-labels", "mobilenetv4_conv_small-w64", classes=5,
                     options={"path": "corners"})
    model = build_model(spec)
    assert model.net.decoder.out_channels == 64
    x = make_input((1, 3, 64, 64))
    with torch.no_grad():
        labels = model(x)
        assert labels.dtype == torch.uint8 and labels.shape == (1, 64, 64)
        assert model.upto_logits(x).shape == (1, 5, 16, 16)
        assert len(model.encoder(x)) == 4
    model.train()
    assert model(x).shape == (1, 5, 64, 64)  # logits while training
    assert split_name("resnet18") == ("resnet18", 128)
    with pytest.raises(ValueError):
        split_name("nope-w64")


def _record(stage, runtime, path, batch, tp, dice, network="mobilenetv4_conv_small", width=128,
            precision="fp32", gflops=2.0, submodules=None):
    row = {"stage": stage, "network": network, "width": width, "runtime": runtime,
           "path": path, "batch": batch, "breakdown": bool(submodules)}
    return Record(benchmark="champion", key=f"{stage}{runtime}{path}{batch}{network}{width}",
                  model=f"{network}+fpn-labels", runtime=runtime, shape=[batch, 3, 512, 512],
                  batch=batch, threads=2, family="fpn-labels", gflops=gflops * batch,
                  timing={"throughput": tp, "throughput_iqr": 0.0, "latency_p50_ms": 1.0},
                  extra={"row": row, "dice": dice, "precision": precision},
                  submodules=submodules or {})


def _probe(runtime, precision, tp):
    return Record(benchmark="champion", key=f"probe{runtime}", model="conv3x3-256+probe",
                  runtime=runtime, shape=[1, 3, 128, 128], batch=1, threads=2, family="probe",
                  gflops=10.0, timing={"throughput": tp}, extra={"precision": precision})


def test_champion_is_the_fastest_row_within_the_dice_tolerance():
    records = [
        _record("baseline", "ort-fp32", "full", 1, 10.0, 0.900,
                submodules={"encoder": {"throughput": 100.0}, "upto_decoder": {"throughput": 25.0},
                       "upto_logits": {"throughput": 20.0}}),
        _record("runtimes", "eager", "full", 1, 8.0, 0.901),
        _record("paths", "compile-int8", "lowres", 1, 40.0, 0.85, precision="int8"),
        _record("paths", "compile-int8", "corners", 1, 25.0, 0.895, precision="int8"),
        _record("width", "compile-int8", "corners", 1, 30.0, 0.880, width=64,
                precision="int8"),
        _probe("compile", "fp32", 10.0), _probe("compile-int8", "int8", 40.0),
    ]
    best = champion.champion(records)
    assert best.extra["row"]["path"] == "corners" and best.throughput == 25.0
    info = champion.recipe(records)
    assert info["runtime"] == "compile-int8" and info["precision"] == "int8"
    assert info["ratio"] == pytest.approx(2.5) and info["batch"] == 1
    assert champion.peaks(records) == {"fp32": 100.0, "int8": 400.0}
    stages = champion.stage_times(records[0])
    assert stages["encoder"] == pytest.approx(10.0)
    assert stages["decoder"] == pytest.approx(30.0)
    assert stages["upsample+argmax"] == pytest.approx(50.0)
    text = champion.main_table(records)
    assert "**champion**" in text and "**baseline**" in text and "2.50x" in text
    assert "-0.006" in text  # corners vs the network's eager full Dice
    assert "Champion:" in champion.headline(records)


def test_the_champion_without_a_breakdown_is_timed_again_in_stages(bench):
    alone = {"encoder": {"throughput": 100.0}, "upto_decoder": {"throughput": 25.0},
             "upto_logits": {"throughput": 20.0}}
    records = [_record("baseline", "ort-fp32", "full", 1, 10.0, 0.900, submodules=alone),
               _record("batch", "compile-int8", "full", 8, 40.0, 0.899, precision="int8")]
    row = champion.needs_breakdown(records)
    assert row is not None and row.breakdown and (row.runtime, row.batch) == ("compile-int8", 8)
    opts = bench.parse(["--dry-run"])
    (cell,) = bench.follow_up(bench, opts, records)
    assert cell.submodules == champion.STAGES and cell.shape[0] == 8
    # the same key as the search's row: its record is replaced, not duplicated
    search = [c for c in bench.make_cells(opts) if c.extra.get("row", {}).get("stage") == "batch"
              and c.runtime == "compile-int8" and c.shape[0] == 8
              and c.model.options["path"] == "full"]
    assert [c.key for c in search] == [cell.key]
    # a champion already timed in stages (here the baseline itself) needs nothing more
    assert champion.needs_breakdown(records[:1]) is None
    assert bench.follow_up(bench, opts, records[:1]) == []


def test_trained_rows_use_the_learnable_phantoms(bench):
    from segbench.data.phantom import WIDE_HEAD_ORGANS

    cell = _cells(bench, ["--quick"])[0]
    assert cell.model.classes == 117
    assert cell.model.options["train"]["organs"] == WIDE_HEAD_ORGANS < 116


def test_evaluate_takes_label_maps_and_finetune_caches(tmp_path):
    from torch import nn

    from segbench.train import evaluate, finetune_path, train_or_load, weights_path

    def labels(x):
        return torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.uint8)

    def logits(x):
        out = torch.zeros(x.shape[0], 3, x.shape[2], x.shape[3])
        out[:, 0] = 1.0
        return out

    a = evaluate(labels, n=2, size=32, classes=3)
    b = evaluate(logits, n=2, size=32, classes=3)
    assert a["mean_dice"] == b["mean_dice"] and a["dice"] == b["dice"]

    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 3, padding=1)
    ft = {"steps": 1, "size": 32, "batch": 1}
    path = train_or_load(model, "tiny", steps=2, batch=2, size=16, classes=3,
                         directory=tmp_path, log_every=0, finetune=ft)
    base = weights_path("tiny", 2, 2, 16, 3e-3, 0, 3, tmp_path)
    assert path == finetune_path(base, ft) and path.exists() and base.exists()
    again = nn.Conv2d(3, 3, 3, padding=1)
    assert train_or_load(again, "tiny", steps=2, batch=2, size=16, classes=3,
                         directory=tmp_path, log_every=0, finetune=ft) == path
    assert torch.equal(again.weight, model.weight)


def test_a_lowres_champion_carries_the_large_organ_caveat():
    alone = {"encoder": {"throughput": 100.0}, "upto_decoder": {"throughput": 25.0},
             "upto_logits": {"throughput": 20.0}}
    records = [_record("baseline", "ort-fp32", "full", 1, 10.0, 0.860, submodules=alone),
               _record("runtimes", "eager", "full", 1, 8.0, 0.860)]
    exact = records + [_record("paths", "compile-int8", "blocked", 1, 30.0, 0.858,
                               precision="int8")]
    assert "coarser grid" not in champion.headline(exact)
    coarse = exact + [_record("paths", "compile-int8", "lowres", 1, 60.0, 0.855,
                              precision="int8")]
    text = champion.headline(coarse)
    assert "path lowres" in text and "coarser grid" in text and "large organs" in text
    # a coarse row that loses more than the tolerance is not the champion
    worse = exact + [_record("paths", "compile-int8", "lowres", 1, 60.0, 0.840,
                             precision="int8")]
    assert champion.champion(worse).extra["row"]["path"] == "blocked"


def test_real_ct_verdict_in_the_headline_names_the_fastest_exact_path():
    from segbench.realct.view import path_verdict
    from segbench.results import Record as R

    alone = {"encoder": {"throughput": 100.0}, "upto_decoder": {"throughput": 25.0},
             "upto_logits": {"throughput": 20.0}}
    records = [_record("baseline", "ort-fp32", "full", 1, 10.0, 0.860, submodules=alone),
               _record("runtimes", "eager", "full", 1, 8.0, 0.860),
               _record("paths", "compile-int8", "blocked", 1, 30.0, 0.858, precision="int8"),
               _record("paths", "compile-int8", "corners", 1, 35.0, 0.859, precision="int8"),
               _record("paths", "compile-int8", "lowres", 1, 60.0, 0.855, precision="int8")]

    def real(path, dice):
        return R(benchmark="real_ct", key=path, model="m", runtime="eager", shape=[], batch=1,
                 threads=2, extra={"kind": "trained", "method": "2d-champion", "path": path,
                                   "mean_dice": dice, "mean_nsd": dice - 0.1,
                                   "dataset": {"name": "OpenKBP", "split": "test", "cases": 20},
                                   "training": {"budget": "20 core-minutes of CPU time"}})

    assert path_verdict([real("lowres", 0.5)]) is None  # no full row: no verdict
    losing = path_verdict([real("lowres", 0.60), real("full", 0.70)])
    text = champion.headline(records, losing)
    assert "coarser grid" not in text  # the real-CT sentence replaces the phantom caveat
    assert "OpenKBP, 20 case(s) of split 'test'" in text and "20 core-minutes" in text
    assert "loses 0.100 Dice on real labels" in text
    assert "fastest path that keeps the labels is corners under compile-int8, 35.0" in text
    elsewhere = champion.headline(records, {**losing, "same_machine": False,
                                            "machine": "CPU X"})
    assert "real_ct run on CPU X" in elsewhere and "real_ct run on" not in text
    keeping = path_verdict([real("lowres", 0.695), real("full", 0.70)])
    text = champion.headline(records, keeping)
    assert "loses" not in text and "Dice 0.695" in text
