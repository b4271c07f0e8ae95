"""Phantom data sets: ``count`` consecutive phantom slices of one split as network inputs and
labels, regenerated from their seeds (nothing is stored), one at a time or in batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from segbench.data.phantom import DEFAULT_ORGANS, Phantom, make_slice, split_seed, to_input


@dataclass(frozen=True)
class PhantomDataset:
    """``count`` consecutive phantom slices of one split, from index ``start``.

    Items are (image (3, H, W) float32 through :data:`WINDOWS`, labels (H, W) int64). Nothing is
    stored: a phantom is regenerated from its seed, so a data set is as cheap to make as to
    describe, and the split fixes the seeds, so train and eval cannot overlap by mistake.
    """

    split: str
    size: int
    count: int
    organs: int = DEFAULT_ORGANS
    start: int = 0

    def __post_init__(self) -> None:
        split_seed(self.split, self.start)  # validates the split and the first index
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.count:
            split_seed(self.split, self.start + self.count - 1)

    def __len__(self) -> int:
        return self.count

    def seed(self, i: int) -> int:
        if not 0 <= i < self.count:
            raise IndexError(f"index {i} outside a data set of {self.count}")
        return split_seed(self.split, self.start + i)

    def phantom(self, i: int) -> Phantom:
        return make_slice(self.size, self.seed(i), self.organs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.phantom(i)
        return to_input(p.hu), p.labels

    def batch(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Items first .. first + n - 1 stacked: images (n, 3, H, W), labels (n, H, W)."""
        items = [self[i] for i in range(first, first + n)]
        return np.stack([im for im, _ in items]), np.stack([lab for _, lab in items])

    def batches(self, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole set in order, in batches of ``n`` (the last one may be shorter)."""
        for first in range(0, self.count, n):
            yield self.batch(first, min(n, self.count - first))
