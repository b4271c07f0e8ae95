"""Phantoms: reproducible per seed, labels that match the image, HU where CT has them, splits
that cannot overlap."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from segbench.data import PhantomDataset, make_slice, make_volume, split_of, split_seed, window
from segbench.data import phantom as ph

SIZE = 64
SEEDS = range(5)


def test_same_seed_same_phantom_and_different_seeds_differ():
    a, b, c = make_slice(SIZE, 3), make_slice(SIZE, 3), make_slice(SIZE, 4)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.allclose(a.hu, c.hu)


def test_shapes_dtypes_and_every_organ_present():
    p = make_slice((SIZE, 80), 0, organs=5)
    assert p.hu.shape == p.labels.shape == p.clean.shape == (SIZE, 80)
    assert p.hu.dtype == np.float32 and p.labels.dtype == np.int64
    assert set(np.unique(p.labels)) == set(range(6))


@pytest.mark.parametrize("seed", SEEDS)
def test_noiseless_map_stays_in_tissue_ranges(seed):
    p = make_slice(SIZE, seed)
    organ = p.labels > 0
    lo, hi = ph.ORGAN_HU
    assert lo <= p.clean[organ].min() and p.clean[organ].max() <= hi
    for k in range(1, p.organ_hu.size + 1):
        values = p.clean[p.labels == k]
        assert np.all(np.abs(values - p.organ_hu[k - 1]) <= ph.ORGAN_TEXTURE + 1e-3)
    # outside the organs, every value is one of the unlabelled tissues
    ranges = [ph.FAT_HU, ph.MUSCLE_HU, ph.SOFT_TISSUE_HU, ph.CANAL_HU, ph.VESSEL_HU,
              ph.MARROW_HU, ph.CORTEX_HU, (ph.AIR_HU, ph.AIR_HU)]
    rest = p.clean[~organ]
    inside = np.zeros(rest.shape, dtype=bool)
    for low, high in ranges:
        inside |= (rest >= low) & (rest <= high)
    assert inside.all()
    assert np.all(p.clean[~p.body] == ph.AIR_HU)
    assert p.clean.max() >= ph.CORTEX_HU[0]  # there is bone


@pytest.mark.parametrize("seed", SEEDS)
def test_noisy_image_agrees_with_labels(seed):
    p = make_slice(SIZE, seed)
    for k in range(1, p.organ_hu.size + 1):
        core = ndimage.binary_erosion(p.labels == k)  # away from partial-volume edges
        if core.sum() >= 4:
            assert abs(p.hu[core].mean() - p.organ_hu[k - 1]) < 30
    air = ~ndimage.binary_dilation(p.body, iterations=2)
    assert abs(p.hu[air].mean() - ph.AIR_HU) < 5
    assert not np.any(p.labels[~p.body])
    assert ph.CT_RANGE[0] <= p.hu.min() and p.hu.max() <= ph.CT_RANGE[1]


def test_anatomy_does_not_depend_on_size():
    small, large = make_slice(SIZE, 7), make_slice(2 * SIZE, 7)
    coarse = large.labels[::2, ::2]
    assert np.mean(coarse == small.labels) > 0.97


def test_volume_is_reproducible_and_labelled():
    a, b = make_volume((16, 48, 48), 2, organs=4), make_volume((16, 48, 48), 2, organs=4)
    assert a.hu.shape == a.labels.shape == (16, 48, 48)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert set(np.unique(a.labels)) <= set(range(5)) and a.labels.max() > 0
    organ = a.labels > 0
    assert ph.ORGAN_HU[0] <= a.clean[organ].min() and a.clean[organ].max() <= ph.ORGAN_HU[1]


def test_window_is_the_documented_linear_map():
    hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    assert np.allclose(window(hu), [-1, -1, 0, 0.5, 1, 1])
    assert np.allclose(window(np.array([-160.0, 40.0, 240.0]), -160, 240), [-1, 0, 1])
    with pytest.raises(ValueError):
        window(hu, 10, 10)


def test_model_input_has_one_channel_per_window():
    x = ph.to_input(np.zeros((2, SIZE, SIZE), dtype=np.float32))
    assert x.shape == (2, len(ph.WINDOWS), SIZE, SIZE) and x.dtype == np.float32


def test_split_seed_ranges_are_disjoint():
    bases = sorted(ph.SPLIT_BASES.values())
    assert all(b - a >= ph.SPLIT_SIZE for a, b in itertools.pairwise(bases))
    last_train = split_seed("train", ph.SPLIT_SIZE - 1)
    assert last_train < split_seed("eval", 0) and split_of(last_train) == "train"
    assert split_of(split_seed("calibration", 5)) == "calibration"
    with pytest.raises(ValueError):
        split_seed("train", ph.SPLIT_SIZE)
    with pytest.raises(ValueError):
        split_seed("test", 0)


def test_datasets_of_different_splits_share_no_seed():
    train = PhantomDataset("train", SIZE, 100)
    held_out = [PhantomDataset(s, SIZE, 100) for s in ("eval", "calibration")]
    train_seeds = {train.seed(i) for i in range(len(train))}
    for d in held_out:
        assert not train_seeds & {d.seed(i) for i in range(len(d))}
    with pytest.raises(ValueError):
        PhantomDataset("train", SIZE, 10, start=ph.SPLIT_SIZE - 5)  # would run into eval


def test_dataset_batches():
    d = PhantomDataset("calibration", SIZE, 5, organs=3)
    images, labels = d.batch(1, 2)
    assert images.shape == (2, 3, SIZE, SIZE) and images.dtype == np.float32
    assert labels.shape == (2, SIZE, SIZE) and labels.dtype == np.int64
    assert np.array_equal(labels[0], make_slice(SIZE, d.seed(1), organs=3).labels)
    assert [len(im) for im, _ in d.batches(2)] == [2, 2, 1]
    with pytest.raises(IndexError):
        d.seed(5)
