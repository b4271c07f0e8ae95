"""Scenarios through the real worker: a tiled loop and a trained-network Dice evaluation."""

from segbench.cell import Cell
from segbench.measure import Protocol
from segbench.models import ModelSpec, build_model
from segbench.worker import run_cell


def test_sliding_window_scenario_times_the_whole_loop():
    cell = Cell(benchmark="t", model=ModelSpec("testing", "tiny", 2), runtime="eager",
                shape=(1, 3, 32, 32), threads=1, protocol=Protocol.smoke(repeats=1),
                fidelity=False,
                scenario={"kind": "sliding_window", "volume": [3, 48, 40], "patch": [32, 32],
                          "step": 0.5})
    r = run_cell(cell)
    assert r.status == "ok", r.reason
    assert r.timing["calls"] >= 2 and r.fidelity is None


def test_unknown_scenario_fails_as_a_row():
    cell = Cell(benchmark="t", model=ModelSpec("testing", "tiny", 2), runtime="eager",
                shape=(1, 3, 32, 32), threads=1, protocol=Protocol.smoke(repeats=1),
                scenario={"kind": "teleport"})
    r = run_cell(cell)
    assert r.status == "failed" and "unknown scenario 'teleport'" in r.reason


def test_phantom_dice_trains_once_and_scores_every_runtime(tmp_path, monkeypatch):
    from segbench import train

    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path)
    recipe = {"steps": 3, "batch": 2, "size": 32, "lr": 1e-2, "seed": 0}
    spec = ModelSpec("testing", "tiny", 9, {"train": recipe})
    cell = Cell(benchmark="t", model=spec, runtime="compile", shape=(1, 3, 32, 32), threads=1,
                protocol=Protocol.smoke(repeats=1),
                scenario={"kind": "phantom_dice", "n": 2, "calibration": 2})
    r = run_cell(cell)
    assert r.status == "ok", r.reason
    assert 0.0 <= r.extra["dice"] <= 1.0 and r.extra["eval_slices"] == 2
    assert r.weights.startswith("trained on phantoms (steps 3")
    assert r.fidelity["label_agreement"] > 90  # compile vs eager on a phantom slice
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    # a second build loads the cached weights: same network, no new file
    a, b = build_model(spec), build_model(spec)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
