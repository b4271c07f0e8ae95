"""A labelled CT data set in nnU-Net v2's raw layout, read and checked before any work.

The layout nnU-Net, TotalSegmentator and MONAI users already keep their scans in::

    DATASET/dataset.json                  labels {"background": 0, "Liver": 1, ...}, file_ending
    DATASET/imagesTr/<case>_0000.nii.gz   the CT in HU (one channel)
    DATASET/labelsTr/<case>.nii.gz        integer label map on the same grid
    DATASET/splits.json                   optional: {"train": [...], "validation": [...], ...}
    DATASET/splits_final.json             optional, nnU-Net's: [{"train": [...], "val": [...]}]

Every volume is reoriented by its affine to the closest canonical (RAS) order with nibabel, then
held as (z, y, x) arrays with (z, y, x) spacing in mm from the header, the axis order of the rest
of the project. Label names come from ``dataset.json``.

A user mistake (no ``dataset.json``, an image without its label, image and label on different
grids, a 2D or 4D image, a label value ``dataset.json`` does not name, a truncated file) is a
:class:`DatasetError` whose message is one line naming the file; :func:`check` finds all of them
before any training or timing starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHANNEL_SUFFIX = "_0000"
SPACING_RTOL = 1e-3  # image and label headers may differ by float rounding, not by more


class DatasetError(ValueError):
    """A data set that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Case:
    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Volume:
    """One case on the canonical grid: HU image (z, y, x) float32, labels uint8, spacing mm."""

    name: str
    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]


@dataclass
class Dataset:
    root: Path
    name: str
    labels: dict[int, str]  # foreground label value -> organ name
    cases: list[Case]
    splits: dict[str, list[str]] = field(default_factory=dict)
    file_ending: str = ".nii.gz"

    @property
    def classes(self) -> int:
        """Output channels a network needs: background plus the highest label value."""
        return max(self.labels, default=0) + 1

    def split(self, name: str | None) -> list[Case]:
        """The cases of split ``name`` (all cases for None or "all"), in file order."""
        if name in (None, "all"):
            return list(self.cases)
        if name not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none (no split file)"
            raise DatasetError(f"{self.root}: no split {name!r}; splits: {known}")
        wanted = set(self.splits[name])
        return [c for c in self.cases if c.name in wanted]

    def describe(self, split: str | None, cases: int) -> dict[str, Any]:
        """What a record and a table caption say about the data: name, split, case count."""
        return {"name": self.name, "split": split or "all", "cases": cases,
                "organs": [self.labels[k] for k in sorted(self.labels)]}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({type(exc).__name__})") from None


def open_dataset(root: str | Path) -> Dataset:
    """The data set at ``root`` from its ``dataset.json`` and file names (no voxel is read)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such data set folder")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing (an nnU-Net raw data set names its labels "
                           "there)")
    meta = _read_json(meta_path)
    raw = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{meta_path}: no 'labels' mapping")
    labels: dict[int, str] = {}
    for organ, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DatasetError(f"{meta_path}: label {organ!r} has value {value!r}, expected an "
                               "integer >= 0 (region-based labels are not supported)")
        if value:
            labels[value] = organ
    ending = meta.get("file_ending", ".nii.gz")
    images, label_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images, label_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing folder")
    cases = []
    for image in sorted(images.glob(f"*{CHANNEL_SUFFIX}{ending}")):
        name = image.name[: -len(CHANNEL_SUFFIX + ending)]
        label = label_dir / f"{name}{ending}"
        if not label.is_file():
            raise DatasetError(f"{image}: no label file {label.name} in {label_dir}")
        cases.append(Case(name, image, label))
    if not cases:
        raise DatasetError(f"{images}: no images named <case>{CHANNEL_SUFFIX}{ending}")
    names = {c.name for c in cases}
    for label in sorted(label_dir.glob(f"*{ending}")):
        if label.name[: -len(ending)] not in names:
            raise DatasetError(f"{label}: a label without its image "
                               f"{label.name[: -len(ending)]}{CHANNEL_SUFFIX}{ending}")
    splits = _read_splits(root, names)
    return Dataset(root, str(meta.get("name") or root.name), labels, cases, splits, ending)


def _read_splits(root: Path, names: set[str]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {}
    path = root / "splits.json"
    if path.is_file():
        data = _read_json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected {{split name: [case, ...]}}")
        splits = {str(k): list(v) for k, v in data.items()}
    else:
        path = root / "splits_final.json"  # nnU-Net's five folds: fold 0's train/val
        if path.is_file():
            data = _read_json(path)
            if not isinstance(data, list) or not data or not isinstance(data[0], dict):
                raise DatasetError(f"{path}: expected nnU-Net's list of folds")
            splits = {"train": list(data[0].get("train", [])),
                      "validation": list(data[0].get("val", []))}
    for split, members in splits.items():
        unknown = sorted(set(members) - names)
        if unknown:
            raise DatasetError(f"{path}: split {split!r} names case {unknown[0]!r}, which has "
                               "no image")
    return splits


def _load(path: Path) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Voxels (z, y, x) in canonical orientation, (z, y, x) spacing, canonical affine."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated gzip, bad header: the user's file
        raise DatasetError(f"{path}: cannot read as NIfTI ({type(exc).__name__}; truncated or "
                           "corrupt?)") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"{path}: a CT volume needs 3 axes, this file has shape "
                           f"{'x'.join(map(str, data.shape))}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if any(not z > 0 for z in zooms):
        raise DatasetError(f"{path}: voxel spacing {zooms} is not positive")
    return (np.ascontiguousarray(data.transpose(2, 1, 0)), (zooms[2], zooms[1], zooms[0]),
            img.affine)


def load_case(dataset: Dataset, case: Case) -> Volume:
    """One case read, reoriented and checked against its label file and ``dataset.json``."""
    image, spacing, affine = _load(case.image)
    labels, lspacing, laffine = _load(case.label)
    if image.shape != labels.shape:
        raise DatasetError(f"{case.label}: label shape {labels.shape} differs from its image's "
                           f"{image.shape} (z, y, x)")
    if not np.allclose(spacing, lspacing, rtol=SPACING_RTOL):
        raise DatasetError(f"{case.label}: label spacing {lspacing} differs from its image's "
                           f"{spacing} mm")
    if not np.allclose(affine[:3, :3], laffine[:3, :3], rtol=SPACING_RTOL, atol=1e-3):
        raise DatasetError(f"{case.label}: label orientation differs from its image's")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.array_equal(labels, np.round(labels)):
            raise DatasetError(f"{case.label}: label values are not integers")
    present = np.unique(labels).astype(np.int64)
    unknown = [int(v) for v in present if v and int(v) not in dataset.labels]
    if unknown or (present < 0).any():
        value = unknown[0] if unknown else int(present.min())
        raise DatasetError(f"{case.label}: label value {value} is not in dataset.json")
    hu = image.astype(np.float32)
    if not np.isfinite(hu).all():
        raise DatasetError(f"{case.image}: holds non-finite values")
    return Volume(case.name, hu, labels.astype(np.uint8), spacing)


def check(dataset: Dataset, cases: list[Case]) -> None:
    """Read every case once (the whole file: a truncated one fails here, not mid-run)."""
    for case in cases:
        load_case(dataset, case)
