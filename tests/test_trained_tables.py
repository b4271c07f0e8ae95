"""Speed tables on trained weights: which cells a trained benchmark makes, what a trained row
carries (its own Dice and FP32 eager's), how quality is judged in the tables, the encoder that
takes its weights from a trained FPN, and the random-weight speed check."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT

from segbench import bench, cli, tables
from segbench.analysis import dice_drops, weights_check_groups, within_spread
from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec, build_model, training_spec
from segbench.results import Record, ResultsFile
from segbench.worker import run_cell


def opts(models, runtimes, quick=True):
    return cli.Options(models=list(models), runtimes=list(runtimes), size=64, batch=1,
                       threads=1, classes=117, repeats=1, quick=quick, out=Path("."),
                       timeout=1, list=False)


def trained_bench(families=("fpn",), check=("resnet18",)):
    return bench.Benchmark(name="t", title="t", families=list(families), models=["resnet18"],
                           quick_models=["resnet18"], trained=True, weights_check=list(check))


def test_a_trained_benchmark_trains_every_network_and_scores_it_on_phantoms():
    cells = trained_bench().default_cells(opts(["resnet18", "regnetx_002"],
                                               ["eager", "ort-int8"]))
    trained = [c for c in cells if not c.extra.get("weights_check")]
    assert len(trained) == 4
    for c in trained:
        recipe = c.model.options["train"]
        assert recipe["organs"] == 16 and recipe["finetune"]["size"] == 64
        assert c.scenario["kind"] == "phantom_dice" and c.scenario["n"] == 2
        # only INT8 runtimes are handed calibration phantoms
        assert ("calibration" in c.scenario) == (c.runtime == "ort-int8")


def test_random_weight_twins_are_timed_just_before_and_just_after_their_trained_row():
    cells = trained_bench().default_cells(opts(["resnet18", "regnetx_002"],
                                               ["eager", "ort-int8"]))
    i = next(i for i, c in enumerate(cells) if c.extra.get("weights_check"))
    before, trained, after = cells[i:i + 3]
    for twin in (before, after):
        assert twin.extra.get("weights_check")
        assert (twin.model.name, twin.runtime, twin.shape) == (
            trained.model.name, trained.runtime, trained.shape)
        assert "train" not in twin.model.options
        # same phantom slices as the trained row: the organs come from the scenario
        assert twin.scenario == {"kind": "phantom_input", "organs": 16}
    assert "train" in trained.model.options and not trained.extra.get("weights_check")
    assert len({before.key, trained.key, after.key}) == 3
    assert sum(1 for c in cells if c.extra.get("weights_check")) == 2  # one network, one runtime


def test_an_untrained_benchmark_keeps_random_weights_on_noise():
    plain = bench.Benchmark(name="t", title="t", families=["fpn"], models=["resnet18"],
                            quick_models=["resnet18"], weights_check=["resnet18"])
    cells = plain.default_cells(opts(["resnet18"], ["eager"]))
    assert len(cells) == 1 and cells[0].scenario is None and not cells[0].model.options


def test_an_encoder_is_trained_through_its_fpn_and_fed_phantoms_without_dice():
    cells = trained_bench(families=("encoder",), check=()).default_cells(
        opts(["resnet18"], ["eager"]))
    assert cells[0].scenario == {"kind": "phantom_input"}
    spec = cells[0].model
    assert training_spec(spec).family == "fpn" and training_spec(spec).options == spec.options
    plain = ModelSpec("fpn", "resnet18", 3)
    assert training_spec(plain) is plain


def test_a_trained_encoder_holds_the_trained_fpn_weights(tmp_path, monkeypatch):
    from segbench import train

    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path)
    recipe = {"steps": 1, "batch": 1, "size": 64, "lr": 1e-2, "seed": 0, "organs": 2}
    encoder = build_model(ModelSpec("encoder", "regnetx_002", 3, {"train": recipe}))
    fpn = build_model(ModelSpec("fpn", "regnetx_002", 3, {"train": recipe}))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # the encoder trained nothing else
    got, want = encoder.backbone.state_dict(), fpn.encoder.backbone.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    random = build_model(ModelSpec("encoder", "regnetx_002", 3))
    assert not all(torch.equal(random.backbone.state_dict()[k], want[k]) for k in want)
    x = torch.randn(1, 3, 64, 64)
    assert len(encoder(x)) == len(random(x))  # every feature level, as the encoder family


def test_a_trained_row_carries_fp32_eager_dice_measured_in_its_own_cell(tmp_path,
                                                                       monkeypatch):
    from segbench import train

    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path)
    spec = ModelSpec("testing", "tiny", 9,
                     {"train": {"steps": 3, "batch": 2, "size": 32, "lr": 1e-2, "seed": 0}})
    cell = Cell(benchmark="t", model=spec, runtime="compile", shape=(1, 3, 32, 32), threads=1,
                protocol=Protocol.smoke(repeats=1), scenario={"kind": "phantom_dice", "n": 2})
    r = run_cell(cell)
    assert r.status == "ok", r.reason
    # eager scored on the same phantoms; compile of the same weights matches it closely
    assert 0.0 <= r.extra["dice_fp32"] <= 1.0
    assert abs(r.extra["dice"] - r.extra["dice_fp32"]) < 0.05
    eager = run_cell(Cell(**{**cell.__dict__, "runtime": "eager"}))
    assert "dice_fp32" not in eager.extra  # the reference is its own reference


def rec(runtime="ort-int8", dice=0.85, dice_fp32=0.86, agreement=80.0, weights="trained",
        tp=10.0, check=False, model="resnet18+fpn", repeats=(9.9, 10.0, 10.1)):
    extra = {} if dice is None else {"dice": dice}
    if dice_fp32 is not None:
        extra["dice_fp32"] = dice_fp32
    if check:
        extra["weights_check"] = True
    return Record(benchmark="t", key=f"{model}|{runtime}|{weights}|{check}", model=model,
                  family="fpn", name="resnet18", options={}, runtime=runtime,
                  shape=[1, 3, 64, 64], batch=1, threads=2, classes=117, quick=False,
                  weights=weights, extra=extra, status="ok",
                  fidelity={"label_agreement": agreement, "sqnr_db": 20.0, "max_abs": 1.0,
                            "mean_dice": 0.5},
                  timing={"throughput": tp, "throughput_iqr": 0.1,
                          "repeat_throughputs": list(repeats)})


def test_trained_rows_are_judged_by_their_dice_drop_not_by_agreement():
    assert tables.own_dice_drop(rec()) == pytest.approx(-0.01)
    assert tables.status_text(rec(dice=0.855)) == "ok"  # 70 % agreement, drop 0.005: fine
    assert "trained Dice -0.060 vs FP32" in tables.status_text(rec(dice=0.80))
    assert tables.status_text(rec(runtime="eager", dice_fp32=None)) == "ok"
    assert tables.dice_drop_text(rec(runtime="eager", dice_fp32=None)) == "reference"
    # a network too little trained for its Dice drop to mean much says so
    assert "barely trained: Dice 0.37 < 0.5" in tables.status_text(rec(dice=0.37, dice_fp32=0.37))
    # a trained encoder (no Dice) is not judged by label agreement either
    assert tables.status_text(rec(dice=None, dice_fp32=None)) == "ok"
    # random weights: agreement is all there is, and the flag says so
    assert "random-weight agreement" in tables.status_text(
        rec(dice=None, dice_fp32=None, weights="random"))


def test_dice_drops_prefer_the_rows_own_fp32_dice():
    records = [rec(runtime="eager", dice=0.90, dice_fp32=None),
               rec(runtime="ort-int8", dice=0.85, dice_fp32=0.86),  # own reference wins
               rec(runtime="ort-fp32", dice=0.88, dice_fp32=None)]  # falls back to eager's
    drops = dice_drops(records)
    assert drops[("resnet18+fpn", "ort-int8")] == pytest.approx(-0.01)
    assert drops[("resnet18+fpn", "ort-fp32")] == pytest.approx(-0.02)
    assert drops[("resnet18+fpn", "eager")] == 0.0


def twin(tp, repeats, model="resnet18+fpn", when="after"):
    r = rec(runtime="compile-bf16", tp=tp, weights="random", check=True, dice=None,
            dice_fp32=None, repeats=repeats, model=model)
    r.key += when
    return r


def test_a_trained_row_differs_only_outside_its_twins_spread():
    trained = rec(runtime="compile-bf16", tp=10.0, repeats=(9.9, 10.0, 10.1))
    # the machine drifted between the twins: the trained row sits inside their span
    drift = [twin(10.6, (10.5, 10.6, 10.7), when="before"), twin(9.5, (9.4, 9.5, 9.6))]
    assert within_spread(trained, drift)
    # both twins agree, and the trained row is well below them: a difference
    apart = [twin(11.0, (10.9, 11.0, 11.1), when="before"), twin(11.0, (10.9, 11.0, 11.1))]
    assert not within_spread(trained, apart)
    table = tables.weights_check_table([apart[0], trained, apart[1]])
    assert "0.909" in table and "| yes" in table and "| 0.0 " in table  # twins agree


def test_random_weight_twins_have_their_own_table_and_nowhere_else():
    trained = rec(runtime="compile-bf16", tp=10.0)
    twins = [twin(10.05, (10.0, 10.05, 10.1), when="before"), twin(10.05, (10.0, 10.05, 10.1))]
    other = twin(10.0, (10.0, 10.0, 10.0), model="regnetx_002+fpn")  # no trained row
    assert weights_check_groups([twins[0], trained, twins[1], other]) == [(trained, twins)]
    table = tables.weights_check_table([twins[0], trained, twins[1]])
    assert "10.1 ± 0.1 / 10.1 ± 0.1" in table and "0.995" in table and "| no" in table
    twin_ = twins[1]
    b = bench.Benchmark(name="t", title="t", families=["fpn"], models=["resnet18"],
                        quick_models=["resnet18"], trained=True,
                        columns=[tables.MODEL, tables.THROUGHPUT, tables.STATUS])
    text = b.render(ResultsFile("t", {"cpu": "x"}, [trained, twin_]))
    main_table = text.split("**Speed with random")[0]
    assert "10.0 ± 0.1" in main_table and "10.1 ± 0.1" not in main_table
    assert "Weights: trained." in text
    assert tables.weights_check_table([trained]) is None


def test_quantization_calibrates_int8_on_as_many_phantoms_as_asked():
    b = bench.load_script(ROOT / "benchmarks" / "quantization" / "benchmark.py")
    options = b.parse(["--quick", "--calibration", "3"])
    cells = b.make_cells(options)
    int8 = [c for c in cells if c.runtime == "ort-int8"]
    assert int8 and all(c.scenario["calibration"] == 3
                        and c.runtime_options["calibration"] == 3 for c in int8)
    assert all("train" in c.model.options for c in cells)
