"""Whole-CT pipelines: a CT in Hounsfield units in, a uint8 label volume on the CT's own grid out.

A per-pass time times a pass count leaves out everything around the network (resampling,
normalisation, blending, argmax, resampling back) and guesses the memory. The pipelines here
are the complete loops a user runs, so the whole_ct benchmark can time them as one call:

- **2D slice-wise**: every axial slice through the display windows the 2D networks were
  trained with (``data.phantom.to_input``), in batches of a fixed size (the last one padded,
  since exported runtimes take one static shape), network, argmax, stacked into the volume.
  2D networks see the CT's own grid: no resampling.
- **3D sliding window** (TotalSegmentator / nnU-Net / STU-Net): resample to the network's
  isotropic spacing (cubic spline, as TotalSegmentator resamples the image), nnU-Net's CT
  normalisation, sliding window with Gaussian blending and float16 accumulators
  (``volume.sliding_window_predict``), argmax, labels back to the original grid. Two ways
  back: ``"nearest"`` resamples the label map (what TotalSegmentator does after nnU-Net
  returns labels on its resampled grid), ``"probabilities"`` resamples the logits linearly
  and takes the argmax there (nnU-Net's own way when it resamples itself), done a few classes
  at a time with a running maximum so 118 classes never sit at full resolution at once.

Stage names follow TotalSegmentator's progress messages (resample, predict, resample back)
plus the parts it does not name (normalise, accumulate, argmax). Axis order is (z, y, x).
No clock is read here: stages are timed by a ``measure.StageClock`` the caller passes in.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from segbench import machine, quality, volume
from segbench.catalogue import Pipeline
from segbench.data.phantom import WIDE_HEAD_ORGANS
from segbench.models import DEFAULT_CLASSES
from segbench.runtimes import REFERENCE
from segbench.tiling import target_shape  # noqa: F401  (read here by segbench.realct)

CACHE_DIR = Path(__file__).resolve().parents[2] / "cache" / "whole_ct"

# The 2D networks have the original recipe's 117 classes; the 3D networks keep their real output
# counts (TotalSegmentator --fast 118, its part networks 25/27/19/24/27). The phantom CT has the
# organs those networks are trained on (WIDE_HEAD_ORGANS, see its note: 116 were not learnable);
# channels beyond the phantom's labels are trained to stay low (2D, --fast) or are random (the
# others).
PHANTOM_ORGANS = WIDE_HEAD_ORGANS
CLASSES_2D = DEFAULT_CLASSES
PHANTOM_SHAPE = (280, 512, 512)  # (z, y, x) voxels
PHANTOM_SPACING = (1.5, 0.78, 0.78)  # (z, y, x) mm
PHANTOM_SEED = 1_000_000_007  # an eval-split seed: never a training or calibration phantom


# --------------------------------------------------------------------------------------------
# The CT


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
        _save_npy(hu_path, ct.hu)
        _save_npy(lab_path, ct.truth)
    return ct


def _save_npy(path: Path, array: np.ndarray) -> None:
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


# --------------------------------------------------------------------------------------------
# 3D preprocessing and postprocessing


@dataclass(frozen=True)
class CTNormalisation:
    """nnU-Net's CTNormalization: clip to the training set's foreground 0.5 / 99.5 percentiles,
    subtract its mean, divide by its std. These are fixed numbers of the data set, not of the
    image. The values here are stand-ins of a typical CT data set (the phantom-trained network
    learns with the same ones); the cost is the same whatever they are."""

    lower: float = -1000.0
    upper: float = 1500.0
    mean: float = 80.0
    std: float = 400.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = np.clip(x, self.lower, self.upper)
        out -= self.mean
        out /= self.std
        return out.astype(np.float32, copy=False)


CT_NORMALISATION = CTNormalisation()


def resample_image(hu: np.ndarray, shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Cubic-spline resampling of the image to ``shape`` (TotalSegmentator resamples the CT with
    order 3 before nnU-Net sees it). Voxel centres are aligned as areas (grid mode)."""
    from scipy import ndimage

    if tuple(shape) == tuple(hu.shape):
        return hu.astype(np.float32, copy=True)
    factors = [t / s for t, s in zip(shape, hu.shape)]
    out = ndimage.zoom(hu, factors, order=order, mode="nearest", grid_mode=True,
                       prefilter=order > 1)
    if tuple(out.shape) != tuple(shape):  # zoom's own rounding can differ by one voxel
        out = out[tuple(slice(0, s) for s in shape)]
        out = np.pad(out, [(0, t - s) for t, s in zip(shape, out.shape)], mode="edge")
    return out.astype(np.float32, copy=False)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of every output voxel when ``n_in`` voxels are resized to ``n_out``,
    centres aligned (the voxel whose area contains the output voxel's centre)."""
    idx = np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def labels_back_nearest(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A label map resized to ``shape`` by nearest neighbour (cheap: one gather)."""
    iz, iy, ix = (nearest_indices(i, o) for i, o in zip(labels.shape, shape))
    return labels[np.ix_(iz, iy, ix)]


def labels_back_probabilities(logits: torch.Tensor, shape: Sequence[int], chunk: int = 4
                              ) -> np.ndarray:
    """Argmax of the logits resampled (trilinear) to ``shape``, ``chunk`` classes at a time.

    nnU-Net resamples all class maps to the original grid, then takes softmax and argmax; the
    argmax of resampled logits is the same as of resampled probabilities' softmax, and a
    running maximum over class chunks gives it without 118 full-resolution maps at once.
    """
    best = torch.full(tuple(shape), -math.inf, dtype=torch.float32)
    labels = torch.zeros(tuple(shape), dtype=torch.uint8)
    for first in range(0, logits.shape[0], chunk):
        part = logits[first:first + chunk].float()[None]
        up = F.interpolate(part, size=tuple(shape), mode="trilinear", align_corners=False)[0]
        value, index = up.max(dim=0)
        better = value > best
        best = torch.where(better, value, best)
        labels = torch.where(better, (index + first).to(torch.uint8), labels)
    return labels.numpy()


def argmax_labels(logits: torch.Tensor) -> np.ndarray:
    """(classes, ...) logits -> uint8 labels (float16 is read in float32 slabs along z, so the
    argmax never holds a float32 copy of the whole accumulator)."""
    out = np.empty(tuple(logits.shape[1:]), dtype=np.uint8)
    step = max(1, 8_000_000 // max(1, math.prod(logits.shape[2:]) * logits.shape[0]))
    for z in range(0, logits.shape[1], step):
        out[z:z + step] = logits[:, z:z + step].float().argmax(0).to(torch.uint8).numpy()
    return out


# --------------------------------------------------------------------------------------------
# Pipelines


Call = Callable[[torch.Tensor], Any]


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))


def padded_plane(hw: Sequence[int]) -> tuple[int, int]:
    """A slice's (y, x) rounded up to the 2D networks' multiple (:data:`MIN_IN_PLANE`)."""
    y, x = (-(-int(n) // MIN_IN_PLANE) * MIN_IN_PLANE for n in hw)
    return y, x


def slice_batch(hu: np.ndarray, first: int, batch: int) -> torch.Tensor:
    """Slices first .. first + batch - 1 through the training windows, (batch, 3, y, x); a
    short last batch is padded with copies of its last slice (dropped after the call), and
    slices whose size is not a multiple of the networks' stride are padded with air below and
    to the right (cropped from the labels; a no-op for 512 x 512)."""
    from segbench.data.phantom import to_input

    part = hu[first:first + batch]
    if len(part) < batch:
        part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
    (h, w), (ph, pw) = part.shape[1:], padded_plane(part.shape[1:])
    if (ph, pw) != (h, w):
        part = np.pad(part, ((0, 0), (0, ph - h), (0, pw - w)), constant_values=AIR_HU)
    return torch.from_numpy(to_input(part))


def run_2d(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Slice-wise segmentation of ``ct``: uint8 labels of the CT's shape."""
    depth = ct.shape[0]
    labels = np.empty(ct.shape, dtype=np.uint8)
    for first in range(0, depth, pipe.batch):
        real = min(pipe.batch, depth - first)
        with stages.stage("window"):
            x = slice_batch(ct.hu, first, pipe.batch)
        with stages.stage("predict"):
            out = call(x)
        with stages.stage("argmax"):
            h, w = ct.shape[1:]
            labels[first:first + real] = _labels_2d(_logits(out)[:real], pipe.path,
                                                    padded_plane((h, w)))[:, :h, :w]
    return labels


def _labels_2d(out: torch.Tensor, path: str, out_hw: Sequence[int]) -> np.ndarray:
    """Labels from a 2D network's output: labels as they are (a ``segbench.labels`` path in
    the graph, e.g. family "fpn-labels": the argmax then ran inside "predict"), full-size
    logits by argmax, low-resolution logits through ``labels.labels_from_logits``."""
    if out.dim() == 3:
        return out.to(torch.uint8).numpy()
    if tuple(out.shape[-2:]) == tuple(out_hw):
        return out.argmax(1).to(torch.uint8).numpy()
    from segbench.labels import labels_from_logits

    return labels_from_logits(out, path, tuple(out_hw)).numpy()


def preprocess_3d(ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Resampled, normalised (z, y, x) float32 grid of a 3D pipeline."""
    grid = pipe.grid(ct.shape, ct.spacing)
    with stages.stage("resample"):
        x = resample_image(ct.hu, grid)
    with stages.stage("normalise"):
        x = CT_NORMALISATION.apply(x)
    return x


def run_3d(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    """Sliding-window segmentation of ``ct``: uint8 labels of the CT's shape."""
    assert pipe.patch is not None
    x = preprocess_3d(ct, pipe, stages)
    logits = volume.sliding_window_predict(call, x[None], pipe.patch, pipe.step, pipe.classes,
                                           mirror=pipe.mirror, accumulate=pipe.accumulate,
                                           stages=stages)
    del x
    if pipe.back == "probabilities":
        with stages.stage("resample back"):  # includes the running argmax
            return labels_back_probabilities(logits, ct.shape)
    with stages.stage("argmax"):
        labels = argmax_labels(logits)
    del logits
    with stages.stage("resample back"):
        return labels_back_nearest(labels, ct.shape)


def run(call: Call, ct: CT, pipe: Pipeline, stages: Any) -> np.ndarray:
    return run_2d(call, ct, pipe, stages) if pipe.kind == "2d" else run_3d(call, ct, pipe, stages)


# --------------------------------------------------------------------------------------------
# Inputs the harness needs besides the CT: an example pass, INT8 calibration


def example_pass(ct: CT, pipe: Pipeline) -> torch.Tensor:
    """One network call's input from the CT itself: the middle batch of slices, or the
    centre tile of the preprocessed grid (export traces it; the isolated-pass estimate times
    it)."""
    from segbench.measure import StageClock  # only for the stage names' sake

    if pipe.kind == "2d":
        return slice_batch(ct.hu, max(0, ct.shape[0] // 2 - pipe.batch // 2), pipe.batch)
    x = preprocess_3d(ct, pipe, StageClock())
    return centre_tile(x, pipe.patch)


def centre_tile(x: np.ndarray, patch: Sequence[int]) -> torch.Tensor:
    pads = volume.padding_to_patch(x.shape, patch)
    x = np.pad(x, pads)
    starts = [(s - p) // 2 for s, p in zip(x.shape, patch)]
    tile = x[tuple(slice(s, s + p) for s, p in zip(starts, patch))]
    return torch.from_numpy(np.ascontiguousarray(tile))[None, None]


def calibration_passes(ct: CT, pipe: Pipeline, count: int, phantom: bool) -> list[np.ndarray]:
    """INT8 calibration inputs: ``count`` network inputs from a calibration-split phantom
    (never the evaluated CT), or from the user's own CT when there is no phantom truth."""
    from segbench.data.phantom import make_volume, split_seed

    if phantom:
        depth = max(16, count * pipe.batch) if pipe.kind == "2d" else ct.shape[0]
        source = make_volume((depth, *ct.shape[1:]), split_seed("calibration", 0),
                             PHANTOM_ORGANS).hu
        ct = CT(source.astype(np.float32), ct.spacing)
    if pipe.kind == "2d":
        firsts = np.linspace(0, max(0, ct.shape[0] - pipe.batch), count).astype(int)
        return [slice_batch(ct.hu, int(f), pipe.batch).numpy() for f in firsts]
    from segbench.measure import StageClock

    assert pipe.patch is not None
    x = np.pad(preprocess_3d(ct, pipe, StageClock()), volume.padding_to_patch(
        pipe.grid(ct.shape, ct.spacing), pipe.patch))
    grid = volume.tile_grid(x.shape, pipe.patch, pipe.step)
    import itertools

    tiles = list(itertools.product(*grid))
    picks = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, count)]
    return [np.ascontiguousarray(x[tuple(slice(s, s + p) for s, p in zip(starts, pipe.patch))]
                                 [None, None]) for starts in picks]


# --------------------------------------------------------------------------------------------
# Quality


# read by segbench.realct (not moved yet): the named metric of segbench.quality
mean_dice = quality.foreground_mean_dice


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of voxels with the same label, in percent."""
    return float((a == b).mean() * 100)


def reference_path(key: str) -> Path:
    """Where an FP32 eager loop leaves its labels for the other runtimes of the same network
    and CT (the random-weight agreement column)."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return CACHE_DIR / f"reference-{digest}.npy"


def save_reference(key: str, labels: np.ndarray) -> None:
    _save_npy(reference_path(key), labels)


def load_reference(key: str) -> np.ndarray | None:
    path = reference_path(key)
    return np.load(path) if path.exists() else None


# --------------------------------------------------------------------------------------------
# Peak memory of the loop


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux: ``5`` into /proc/self/clear_refs), so
    the peak read after a loop is the loop's own, not the export's or the model build's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class LoopLog:
    """What the last loop of a cell left behind for the evaluation after timing."""

    labels: np.ndarray | None = None
    stages: dict[str, float] = field(default_factory=dict)
    peak_rss: int | None = None
    peak_reset: bool = False
    loops: int = 0


class LoopScenario:
    """The whole_ct scenario's logic (``scenarios.WholeCT`` delegates here).

    ``cell.scenario``: {"kind": "whole_ct", "ct": load_ct source, "pipeline":
    Pipeline.to_dict(), "quality": "dice" | "agreement", "reference": key shared by the
    runtimes of one network and CT, "calibration": INT8 inputs, "estimate_passes": isolated
    passes timed after the loop}. One timed call runs the whole pipeline on the CT, after
    resetting the RSS high-water mark; the last loop's labels, stage times and peak RSS stay
    here for :meth:`evaluate`. With {"warmup": "pass"} the harness's first call (its warm-up,
    timed apart) is one network pass instead of a whole loop: for loops of several minutes,
    where the pass warms the same kernels and a second loop would not fit the run's budget.
    """

    def __init__(self) -> None:
        self._cts: dict[str, CT] = {}
        self._logs: dict[str, LoopLog] = {}
        self._examples: dict[str, torch.Tensor] = {}

    def ct(self, cell: Any) -> CT:
        import json

        key = json.dumps(cell.scenario["ct"], sort_keys=True)
        if key not in self._cts:
            self._cts = {key: load_ct(cell.scenario["ct"])}  # one CT per process at a time
        return self._cts[key]

    @staticmethod
    def pipeline(cell: Any) -> Pipeline:
        return Pipeline.from_dict(cell.scenario["pipeline"])

    def example(self, cell: Any) -> torch.Tensor:
        x = example_pass(self.ct(cell), self.pipeline(cell))
        self._examples[cell.key] = x
        return x

    def runtime_options(self, cell: Any) -> dict[str, Any]:
        from segbench import runtimes

        if runtimes.get(cell.runtime).precision != "int8":
            return {}
        ct = self.ct(cell)
        count = int(cell.scenario.get("calibration", 8))
        arrays = calibration_passes(ct, self.pipeline(cell), count,
                                    phantom=cell.scenario["ct"]["kind"] == "phantom")
        return {"calibration_inputs": arrays}

    def workload(self, cell: Any, example: torch.Tensor) -> Callable[[Call], Callable[[], Any]]:
        from segbench.measure import StageClock

        ct, pipe = self.ct(cell), self.pipeline(cell)
        log = self._logs[cell.key] = LoopLog()

        warm_pass = [cell.scenario.get("warmup") == "pass"]

        def loop(call: Call) -> Callable[[], Any]:
            def one() -> Any:
                if warm_pass[0]:  # first call = one network pass (see Protocol in the docs)
                    warm_pass[0] = False
                    return call(example)
                log.labels = None  # the previous loop's labels do not count in this peak
                stages = StageClock()
                log.peak_reset = reset_peak_rss()
                labels = run(call, ct, pipe, stages)
                log.peak_rss = machine.peak_rss_bytes()
                log.stages, log.labels = dict(stages.seconds), labels
                log.loops += 1
                return labels

            return one

        return loop

    def evaluate(self, cell: Any, call: Call) -> dict[str, Any]:
        from segbench.measure import time_call

        ct, pipe, sc = self.ct(cell), self.pipeline(cell), cell.scenario
        log = self._logs.get(cell.key, LoopLog())
        out: dict[str, Any] = {
            "whole_ct": True, "ct_source": ct.source, "ct_shape": list(ct.shape),
            "ct_spacing": list(ct.spacing), "grid": list(pipe.grid(ct.shape, ct.spacing)),
            "passes": pipe.passes(ct.shape, ct.spacing), "stages_s": log.stages,
            "loop_peak_rss_bytes": log.peak_rss if log.peak_reset else None,
            "loops_run": log.loops, "pipeline": pipe.to_dict(),
            "warmup": ("one network pass" if sc.get("warmup") == "pass" else "one whole loop")}
        # the per-pass estimate of the same cell: isolated passes x the pass count
        example = self._examples.get(cell.key)
        k = int(sc.get("estimate_passes", 2))
        if example is not None and k > 0:
            times = sorted(time_call(lambda: call(example))[1] for _ in range(k))
            per_pass = times[len(times) // 2]
            out.update(seconds_per_pass=per_pass, estimate_s=per_pass * out["passes"])
        labels = log.labels
        if labels is None:
            return out
        if labels.shape != ct.shape:
            raise ValueError(f"pipeline returned labels of shape {labels.shape}, CT is {ct.shape}")
        if ct.truth is not None and sc.get("quality") == "dice":
            out["dice"] = quality.foreground_mean_dice(ct.truth, labels)
        ref_key = sc.get("reference")
        if ref_key:
            # the FP32 eager loop saves the labels the other runtimes of its reference key
            # are compared with; a search states it (its eager variants compare, not save)
            if sc.get("saves_reference", cell.runtime == REFERENCE):
                save_reference(ref_key, labels)
                out["agreement_vs_eager"] = 100.0
            else:
                ref = load_reference(ref_key)
                if ref is not None and ref.shape == labels.shape:
                    out["agreement_vs_eager"] = agreement(ref, labels)
                    # Dice needs no truth: the reference's labels are the truth here
                    if (ct.truth is not None and sc.get("quality") == "dice"
                            or sc.get("quality") == "dice_vs_reference"):
                        out["dice_vs_eager"] = quality.foreground_mean_dice(ref, labels)
        return out
