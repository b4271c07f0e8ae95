"""Training on phantoms: the loss falls, runs are reproducible, Dice scores what it should, and
weights survive a safetensors round-trip."""

import numpy as np
import pytest
import torch

from segbench import quality
from segbench import train as tr
from segbench.data import PhantomDataset
from segbench.models import ModelSpec, build_model

SIZE = 64
CLASSES = 4  # 3 organs + background keeps the tiny runs quick


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets on a busy 2-core machine: OpenMP threads waiting for each other cost 100x the
    work itself, so these tests run single-threaded (and restore the setting after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny():
    return build_model(ModelSpec("testing", "tiny", CLASSES))


def test_a_short_run_lowers_the_loss_and_ends_in_eval_mode():
    model = tiny()
    result = tr.train(model, steps=30, batch=4, size=SIZE, lr=1e-2, seed=0, classes=CLASSES,
                      log_every=0)
    assert len(result.losses) == 30
    assert np.mean(result.losses[-5:]) < 0.8 * np.mean(result.losses[:5])
    assert not model.training


def test_training_is_deterministic_per_seed():
    runs = [tr.train(tiny(), steps=3, batch=2, size=SIZE, seed=s, classes=CLASSES, log_every=0)
            for s in (1, 1, 2)]
    assert runs[0].losses == runs[1].losses
    assert runs[0].losses != runs[2].losses


def test_wrong_class_count_is_refused():
    with pytest.raises(ValueError, match="channels"):
        tr.train(tiny(), steps=1, batch=1, size=SIZE, classes=CLASSES + 1, log_every=0)


def test_dice_of_two_overlapping_squares():
    ref = np.zeros((8, 8), dtype=np.int64)
    out = np.zeros((8, 8), dtype=np.int64)
    ref[0:4, 0:4] = 1
    out[2:6, 2:6] = 1  # 16 px each, overlap 2x2 = 4 -> Dice 2*4/32
    assert quality.organ_dice(ref, out) == {1: pytest.approx(0.25)}


def test_soft_dice_loss_is_zero_for_a_confident_perfect_prediction():
    labels = torch.tensor([[[0, 1], [2, 1]]])
    logits = 50.0 * torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float()
    assert tr.soft_dice_loss(logits, labels).item() == pytest.approx(0.0, abs=1e-4)
    # all background: class 1 has 2 px, none predicted -> (0 + 1) / (2 + 1); class 2 -> 1 / 2
    background = 50.0 * torch.nn.functional.one_hot(torch.zeros_like(labels), 3).movedim(-1, 1)
    expected = 1.0 - (1 / 3 + 1 / 2) / 2
    assert tr.soft_dice_loss(background.float(), labels).item() == pytest.approx(expected)


def test_soft_dice_loss_over_the_data_organs_ignores_channels_no_pixel_uses():
    # 2 organs in the data, a 5-channel head: channels 3 and 4 are never a label
    labels = torch.tensor([[[0, 1], [2, 1]]])
    perfect = 50.0 * torch.nn.functional.one_hot(labels, 5).movedim(-1, 1).float()
    assert tr.soft_dice_loss(perfect, labels, organs=2).item() == pytest.approx(0.0, abs=1e-4)
    # over all four foreground channels the two unused ones count Dice 1 each: half the loss
    wrong = 50.0 * torch.nn.functional.one_hot(torch.zeros_like(labels), 5).movedim(-1, 1)
    narrow = tr.soft_dice_loss(wrong.float(), labels, organs=2).item()
    wide = tr.soft_dice_loss(wrong.float(), labels).item()
    assert narrow == pytest.approx(1.0 - (1 / 3 + 1 / 2) / 2)
    assert wide == pytest.approx(narrow / 2)


def test_a_wide_head_trains_and_scores_on_fewer_organs(tmp_path):
    """organs < classes - 1: the phantoms have 2 organs, the head 4 channels; the cache key,
    the data and the evaluation all follow ``organs``."""
    model = tiny()
    path = tr.train_or_load(model, "tiny", steps=2, batch=2, size=SIZE, classes=CLASSES,
                            directory=tmp_path, log_every=0, organs=2)
    assert "-c4-o2-" in path.name
    default = tr.weights_path("tiny", 2, 2, SIZE, 3e-3, 0, CLASSES, tmp_path)
    assert "-o" not in default.name.split("-c4")[1].split("-steps")[0]
    result = tr.evaluate(oracle(2, CLASSES, organs=2), n=2, size=SIZE, classes=CLASSES,
                         organs=2)
    assert result["organs"] == 2
    assert set(result["dice"]) == {1, 2} and result["mean_dice"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="organs must be 1..3"):
        tr.train(tiny(), steps=1, batch=1, size=SIZE, classes=CLASSES, organs=4, log_every=0)


def oracle(n, classes, good=True, organs=None):
    """A predict() that knows the eval labels (or gets every organ wrong)."""
    labels = np.stack([lab for _, lab in PhantomDataset("eval", SIZE, n,
                                                        organs=organs or classes - 1)])
    calls = iter(range(n))

    def predict(x):
        i = next(calls)
        lab = torch.from_numpy(labels[i:i + 1]) if good else torch.zeros(1, SIZE, SIZE).long()
        return torch.nn.functional.one_hot(lab, classes).movedim(-1, 1).float()

    return predict


def test_evaluate_scores_a_perfect_and_a_blind_predictor():
    perfect = tr.evaluate(oracle(3, CLASSES), n=3, size=SIZE, classes=CLASSES)
    assert perfect["mean_dice"] == 1.0 and set(perfect["dice"]) == {1, 2, 3}
    blind = tr.evaluate(oracle(3, CLASSES, good=False), n=3, size=SIZE, classes=CLASSES)
    assert blind["mean_dice"] == 0.0


def test_evaluate_pads_to_the_runtime_batch():
    model = tiny()
    seen = []

    def predict(x):
        seen.append(x.shape[0])
        with torch.no_grad():
            return model(x).numpy()

    result = tr.evaluate(predict, n=5, size=SIZE, classes=CLASSES, batch=2)
    assert seen == [2, 2, 2] and 0.0 <= result["mean_dice"] <= 1.0


def test_weights_round_trip(tmp_path):
    model = tiny()
    tr.train(model, steps=2, batch=2, size=SIZE, classes=CLASSES, log_every=0)
    path = tr.save_weights(model, tmp_path / "w.safetensors", {"note": "x"})
    other = tiny()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert not torch.equal(model(x), other(x))
        tr.load_weights(other, path)
        assert torch.equal(model(x), other(x))
    assert metadata(path) == {"note": "x"}


def metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def test_train_or_load_trains_once_then_reuses(tmp_path):
    args = {"steps": 2, "batch": 2, "size": SIZE, "seed": 0, "classes": CLASSES,
            "directory": tmp_path, "log_every": 0}
    first = tiny()
    path = tr.train_or_load(first, "testing/tiny", **args)
    assert path.exists() and path.parent == tmp_path
    assert "steps2" in path.name and "px64" in path.name and "seed0" in path.name
    stamp = path.stat().st_mtime_ns
    second = tiny()
    assert tr.train_or_load(second, "testing/tiny", **args) == path
    assert path.stat().st_mtime_ns == stamp  # loaded, not retrained
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert metadata(path)["steps"] == "2"
