"""Organ masks drawn independently by several annotators on the same scans (labels only).

Layout: ``ROOT/SPLIT/SCAN/ANNOTATOR/ORGAN.nii.gz``, one binary mask per organ (masks may
overlap, so organs stay separate), as in the head-and-neck set of Nikolov et al. (2018) with an
oncologist and a radiographer per scan. Masks are read with :mod:`segbench.realct.dataset`'s
reader (canonical orientation, (z, y, x), spacing from the header).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segbench.realct.dataset import DatasetError, _load

ENDING = ".nii.gz"


@dataclass(frozen=True)
class Scan:
    split: str
    name: str
    masks: dict[str, dict[str, Path]]  # annotator -> organ -> file

    @property
    def annotators(self) -> list[str]:
        return sorted(self.masks)

    def organs(self) -> list[str]:
        """Organs every annotator of the scan drew."""
        sets = [set(m) for m in self.masks.values()]
        return sorted(set.intersection(*sets)) if sets else []


def open_observers(root: str | Path) -> list[Scan]:
    """Every scan under ``root`` with at least two annotators; DatasetError if none."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    scans = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for scan_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            masks = {a.name: {f.name[: -len(ENDING)]: f for f in sorted(a.glob(f"*{ENDING}"))}
                     for a in sorted(scan_dir.iterdir()) if a.is_dir()}
            masks = {a: m for a, m in masks.items() if m}
            if len(masks) >= 2:
                scans.append(Scan(split_dir.name, scan_dir.name, masks))
    if not scans:
        raise DatasetError(f"{root}: no SPLIT/SCAN/ANNOTATOR/ORGAN{ENDING} masks with two "
                           "annotators")
    return scans


def load_mask(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    data, spacing, _ = _load(path)
    low, high = (data.min(), data.max()) if data.size else (0, 0)
    if low < 0 or high > 1 or (data.dtype.kind == "f" and not np.isin(data, (0, 1)).all()):
        raise DatasetError(f"{path}: a mask holds only 0 and 1, this one {low} to {high}")
    return data.astype(bool), spacing


def select(scans: Sequence[Scan], count: int | None) -> list[Scan]:
    return list(scans[:count]) if count else list(scans)
