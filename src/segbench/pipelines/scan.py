"""The CT a whole-CT pipeline reads: an HU volume (z, y, x) with its spacing and, for a phantom,
its truth. The benchmark's phantom CT (made once, cached in cache/whole_ct/), a NIfTI file
checked whole before any work (one-line refusals, and what is unusual though usable) and read,
and :func:`load_ct` for the source a cell's scenario names. No array library beyond numpy.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from segbench.data.phantom import WIDE_HEAD_ORGANS

CACHE_DIR = Path(__file__).resolve().parents[3] / "cache" / "whole_ct"

# The 2D networks have the original recipe's 117 classes (catalogue.CLASSES_2D); the 3D networks
# keep their real output counts (TotalSegmentator --fast 118, its part networks 25/27/19/24/27).
# The phantom CT has the organs those networks are trained on (WIDE_HEAD_ORGANS, see its note:
# 116 were not learnable); channels beyond the phantom's labels are trained to stay low (2D,
# --fast) or are random (the others).
PHANTOM_ORGANS = WIDE_HEAD_ORGANS
PHANTOM_SHAPE = (280, 512, 512)  # (z, y, x) voxels
PHANTOM_SPACING = (1.5, 0.78, 0.78)  # (z, y, x) mm
PHANTOM_SEED = 1_000_000_007  # an eval-split seed: never a training or calibration phantom


@dataclass
class CT:
    """An HU volume (z, y, x) float32, its voxel spacing in mm, and its truth if known."""

    hu: np.ndarray
    spacing: tuple[float, float, float]
    truth: np.ndarray | None = None
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]


def phantom_ct(shape: Sequence[int] = PHANTOM_SHAPE,
               spacing: Sequence[float] = PHANTOM_SPACING, seed: int = PHANTOM_SEED,
               organs: int = PHANTOM_ORGANS, cache: Path | None = CACHE_DIR) -> CT:
    """The phantom CT of the benchmark, from the project's generator (cached: a 512x512x280
    phantom takes ~20 s to make and every cell of a run needs it)."""
    from segbench.data.phantom import PHANTOM_VERSION, make_volume

    shape = tuple(int(s) for s in shape)
    name = (f"phantom-{'x'.join(map(str, shape))}-seed{seed}-organs{organs}"
            f"-v{PHANTOM_VERSION}")
    source = f"phantom {'x'.join(map(str, shape[::-1]))} (x, y, z) seed {seed}"
    spacing = tuple(float(s) for s in spacing)
    if cache is not None:
        hu_path, lab_path = cache / f"{name}.hu.npy", cache / f"{name}.labels.npy"
        if hu_path.exists() and lab_path.exists():
            return CT(np.load(hu_path), spacing, np.load(lab_path), source)
    p = make_volume(shape, seed, organs)
    ct = CT(p.hu.astype(np.float32), spacing, p.labels.astype(np.uint8), source)
    if cache is not None:
        save_npy(hu_path, ct.hu)
        save_npy(lab_path, ct.truth)
    return ct


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# What a CT given with ``--input`` must be, checked before any work (check_nifti); the
# smallest volume every whole-CT pipeline can run on, and what no CT scanner writes.
MIN_IN_PLANE = 32  # voxels along x and y: the 2D networks downsample 32 times (fpn-labels'
# size_multiple); a smaller slice has no deepest feature map
MIN_SLICES = 2
SPACING_RANGE_MM = (0.05, 20.0)  # a voxel edge outside it is a unit mistake or a broken header
MAX_EXTENT_MM = 2500.0  # field of view along any axis: beyond a whole body (the 3D pipelines'
# resampled grids would not fit in memory)
# What only looks unusual: the pipelines run, the rows say so.
SLAB_MM = 100.0  # less along z: a slab, not a whole CT
SMALL_FOV_MM = 300.0  # less in plane: a head, a limb or a crop, not a body (350-500 mm)
THICK_SLICE_MM = 5.0
NO_AIR_HU = -500.0  # every CT of a body or head has air (-1000 HU) in view, outside or in lungs
AIR_HU = -1000.0  # what a 2D slice is padded with to a multiple of MIN_IN_PLANE

def padded_plane(hw: Sequence[int]) -> tuple[int, int]:
    """A slice's (y, x) rounded up to the 2D networks' multiple (:data:`MIN_IN_PLANE`)."""
    y, x = (-(-int(n) // MIN_IN_PLANE) * MIN_IN_PLANE for n in hw)
    return y, x


@dataclass(frozen=True)
class CTCheck:
    """A NIfTI CT read whole and found usable: (z, y, x) shape and spacing, its value range,
    and what about it is unusual though not wrong (each a short phrase for the rows)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    low: float
    high: float
    unusual: tuple[str, ...] = ()


def check_nifti(path: str | Path) -> str:
    """Validate a NIfTI CT before any work: the path, or ValueError with one line.

    The whole file is read (a truncated or corrupt file fails here, not in a cell) and
    refused when a voxel is NaN or infinite, the volume is smaller than the pipelines need
    (:data:`MIN_IN_PLANE`, :data:`MIN_SLICES`), the spacing is zero, negative or outside
    :data:`SPACING_RANGE_MM` (or the field of view beyond :data:`MAX_EXTENT_MM`), or the
    values cannot be Hounsfield units (an integer label map, a volume in 0-1, a constant).
    """
    inspect_nifti(path)
    return str(path)


def inspect_nifti(path: str | Path) -> CTCheck:
    """:func:`check_nifti`'s findings (read once per file version: the argument check and the
    benchmark's cells both ask)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--input {path}: no such file")
    stat = path.stat()
    return _inspect_nifti(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _inspect_nifti(name: str, mtime_ns: int, size: int) -> CTCheck:
    path = Path(name)
    img, shape, zooms = _open_nifti(path)
    if min(shape[:2]) < MIN_IN_PLANE or shape[2] < MIN_SLICES:
        raise ValueError(f"--input {path}: {'x'.join(map(str, shape))} voxels (x, y, z) is "
                         f"smaller than the whole-CT pipelines need: at least {MIN_IN_PLANE} "
                         f"x {MIN_IN_PLANE} in plane (the 2D networks downsample "
                         f"{MIN_IN_PLANE} times) and {MIN_SLICES} slices")
    try:
        if path.name.endswith(".gz"):  # to its end: the reader stops at the last voxel, and
            with gzip.open(path, "rb") as f:  # only the end's checksum shows a damaged block
                while f.read(1 << 24):
                    pass
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - any reader error is the user's file
        raise ValueError(f"--input {path}: truncated or corrupt, its voxels cannot be read "
                         f"({type(exc).__name__}: {str(exc)[:80]})") from None
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ValueError(f"--input {path}: {bad} of {data.size} voxels are NaN or infinite; a "
                         "CT holds finite Hounsfield units")
    low, high = float(data.min()), float(data.max())
    hu = "not Hounsfield units (air -1000, water 0, bone 300 and more)"
    sample = data.ravel()[::97]
    if low >= 0 and np.array_equal(sample, np.round(sample)):
        # few integer values, one of them (the background) on a large share of the voxels;
        # the HU of even a soft-tissue crop spread over hundreds of noisy values
        values, counts = np.unique(sample, return_counts=True)
        distinct = len(values)
        if distinct <= 256 and counts.max() >= 0.2 * len(sample):
            raise ValueError(f"--input {path}: integer values {low:g}..{high:g} ({distinct} "
                             f"distinct): a label map or an 8-bit image, {hu}")
    if high - low <= 10:
        what = "in 0-1 (a normalised image?)" if low >= 0 and high <= 1 else (
            f"spanning only {low:g}..{high:g}")
        raise ValueError(f"--input {path}: values {what}, {hu}")
    zyx, spacing = (shape[2], shape[1], shape[0]), (zooms[2], zooms[1], zooms[0])
    return CTCheck(zyx, spacing, low, high, unusual_ct(zyx, spacing, low))


def unusual_ct(shape: Sequence[int], spacing: Sequence[float], low: float) -> tuple[str, ...]:
    """What about a usable CT ((z, y, x) voxels and mm) is unusual enough to say in its rows."""
    (z, y, x), (sz, sy, sx) = shape, spacing
    out = []
    if z * sz < SLAB_MM:
        out.append(f"a slab of {z} slices ({z * sz:g} mm along z), not a whole CT")
    if min(y * sy, x * sx) < SMALL_FOV_MM:
        out.append(f"in-plane field of view {x * sx:.0f} x {y * sy:.0f} mm, smaller than a "
                   "body (a head, a limb or a crop?)")
    if sz > THICK_SLICE_MM:
        out.append(f"{sz:g} mm slices")
    if low > NO_AIR_HU:
        out.append(f"no voxel below {NO_AIR_HU:g} HU (no air in view, or values offset from HU)")
    padded = padded_plane((y, x))
    if padded != (y, x):
        out.append(f"slices of {x} x {y} padded with air to {padded[1]} x {padded[0]} for the "
                   "2D networks")
    return tuple(out)


def _open_nifti(path: Path) -> tuple[Any, tuple[int, ...], tuple[float, ...]]:
    """The image, its (x, y, z) shape and spacing from the header, checked: 3 axes and a
    spacing a CT can have."""
    import nibabel as nib

    if not path.is_file():
        raise ValueError(f"--input {path}: no such file")
    try:
        with _quiet_nibabel():  # its header fixes are refusals below, in our one line
            img = nib.load(str(path))
        shape = tuple(img.shape)
        zooms = _stored_zooms(img)
    except Exception as exc:  # noqa: BLE001 - any reader error is the user's file
        raise ValueError(f"--input {path}: cannot read as NIfTI ({type(exc).__name__})") from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or len(zooms) < 3:
        raise ValueError(f"--input {path}: a CT volume needs 3 axes, this file has shape "
                         f"{'x'.join(map(str, img.shape))}")
    mm = " x ".join(f"{z:g}" for z in zooms)
    if not all(z > 0 for z in zooms):  # NaN included
        raise ValueError(f"--input {path}: voxel spacing {mm} mm (x, y, z) in its header; a "
                         "spacing must be positive")
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= z <= hi for z in zooms):
        hint = " (given in metres?)" if min(zooms) < lo else ""
        raise ValueError(f"--input {path}: voxel spacing {mm} mm (x, y, z){hint}; a CT's lies "
                         f"between {lo:g} and {hi:g} mm")
    extent = max(n * z for n, z in zip(shape, zooms))
    if extent > MAX_EXTENT_MM:
        raise ValueError(f"--input {path}: field of view {extent / 1000:.1f} m along one axis "
                         f"({'x'.join(map(str, shape))} voxels of {mm} mm); a CT's is at most "
                         f"{MAX_EXTENT_MM / 1000:g} m")
    return img, shape, zooms


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel logs the header fields it corrects ("pixdim[1,2,3] should be non-zero ..."),
    which Python prints on stderr when no handler is set: silenced while it reads."""
    import logging

    logger = logging.getLogger("nibabel.global")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _stored_zooms(img: Any) -> tuple[float, ...]:
    """The voxel spacing as the file stores it: nibabel's checked header turns a zero spacing
    into 1 and a negative one into its absolute value, both of which a CT must not pass."""
    from nibabel.openers import ImageOpener

    holder = img.file_map.get("header") or img.file_map.get("image")  # .hdr, or .nii
    if holder is None or holder.filename is None:
        return tuple(float(z) for z in img.header.get_zooms()[:3])
    with ImageOpener(holder.filename) as f:
        raw = type(img.header).from_fileobj(f, check=False)
    return tuple(float(z) for z in raw["pixdim"][1:1 + min(3, len(img.shape))])


def read_nifti(path: str | Path) -> CT:
    """A NIfTI CT (.nii / .nii.gz) as (z, y, x) HU with spacing from its header.

    Raises ValueError with a one-line reason for a missing, unreadable or non-3D file (a
    trailing axis of length 1 is accepted as 3D). Voxel axes are taken as stored, (i, j, k)
    becoming (x, y, z); the orientation is not changed, which the networks here do not need.
    """
    path = Path(path)
    img, shape, zooms = _open_nifti(path)
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    hu = np.ascontiguousarray(data.transpose(2, 1, 0))
    return CT(hu, (zooms[2], zooms[1], zooms[0]), None, f"NIfTI {path.name}")


def load_ct(source: dict[str, Any]) -> CT:
    """The CT a cell's scenario names: {"kind": "phantom", shape, spacing, seed} or
    {"kind": "nifti", "path": ...}."""
    if source["kind"] == "nifti":
        return read_nifti(source["path"])
    return phantom_ct(source["shape"], source["spacing"], source.get("seed", PHANTOM_SEED),
                      cache=CACHE_DIR if source.get("cache", True) else None)

