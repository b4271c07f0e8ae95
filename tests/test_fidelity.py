"""Fidelity metrics on hand-made arrays with known answers."""

import math

import numpy as np
import pytest

from segbench import fidelity, quality


def test_identical_outputs_are_perfect():
    a = np.random.default_rng(0).normal(size=(1, 3, 4, 4)).astype(np.float32)
    f = fidelity.compare(a, a.copy())
    assert f["max_abs"] == 0.0 and math.isinf(f["sqnr_db"])
    assert f["label_agreement"] == 100.0 and f["mean_dice"] == 1.0


def test_sqnr_of_a_known_noise_level():
    ref = np.ones(1000)
    out = ref + 0.1  # signal power 1, noise power 0.01 -> 20 dB
    assert fidelity.sqnr_db(ref, out) == pytest.approx(20.0)
    assert fidelity.max_abs_error(ref, out) == pytest.approx(0.1)


def test_label_agreement_and_dice_on_a_flipped_quarter():
    ref = np.zeros((1, 2, 4, 4), dtype=np.float32)
    ref[:, 1, :2, :] = 1.0  # label 1 in the top half, label 0 in the bottom half
    out = ref.copy()
    out[:, :, 0, :2] = out[:, ::-1, 0, :2]  # two label-1 pixels become label 0
    f = fidelity.compare(ref, out)
    assert f["label_agreement"] == pytest.approx(100 * 14 / 16)
    # label 1: ref 8 px, out 6 px, overlap 6 -> 12/14; label 0: ref 8, out 10, overlap 8 -> 16/18
    assert f["mean_dice"] == pytest.approx((12 / 14 + 16 / 18) / 2)


def test_dice_scores_only_labels_present_in_the_reference():
    ref = np.array([[0, 0, 1, 1]])
    out = np.array([[0, 2, 1, 1]])
    scores = quality.dice_per_label(ref, out)
    assert set(scores) == {0, 1}
    assert scores[0] == pytest.approx(2 * 1 / 3)
    assert scores[1] == 1.0


def test_feature_maps_get_no_label_metrics():
    feats = [np.ones((1, 8, 2, 2)), np.ones((1, 16, 1, 1))]
    f = fidelity.compare(feats, [x * 1.01 for x in feats])
    assert f["label_agreement"] is None and f["sqnr_db"] == pytest.approx(40.0)


def test_threshold_marks_low_agreement():
    assert fidelity.below_threshold({"label_agreement": 98.0})
    assert not fidelity.below_threshold({"label_agreement": 99.5})
    assert not fidelity.below_threshold(None)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        fidelity.compare(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 5)))
