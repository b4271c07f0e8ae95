"""CT-like phantoms: labelled slices and volumes made from a seed, because no data set may be
downloaded and fidelity on random weights says little (near-tied logits).

What a phantom contains (all in Hounsfield units, HU):

- air outside a smooth, randomly deformed elliptical body outline;
- subcutaneous fat under the skin, a muscle wall inside it, and an interior of soft tissue
  sprinkled with patches of visceral fat;
- bone: a vertebra (cortical ring around marrow, a neural arch around the spinal canal and a
  spinous process) at the back, and rib cross-sections in the muscle wall; an aorta in front of
  the spine. None of these is labelled: a network must learn to ignore bright things that are
  not organs;
- ``organs`` contrast-enhanced organs, labels 1..K, each a union of one to three deformed
  ellipses. Every label has a fixed *identity* across seeds (an :class:`Atlas`: home position,
  size, elongation, HU level), jittered per sample, so that "label 3" means the same organ in
  every phantom and a network can learn which organ is which, as it would on real CT;
- partial-volume blur (a small Gaussian blur of the HU image; labels stay sharp) and Gaussian
  noise, both with a per-sample strength.

Geometry is defined on normalised coordinates in [-1, 1] and every random field is drawn at a
fixed coarse resolution and interpolated, so one seed gives the same anatomy at any size; only
the pixel noise is drawn per pixel (last, so it shifts nothing else). The noiseless, unblurred
tissue map is returned too: the labels describe it exactly, and tests check HU ranges on it.

Axis order is array order: (y, x) for a slice, (z, y, x) for a volume; y grows towards the
patient's back (the spine is at the bottom of the image, as CT is usually displayed).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Bumped whenever a change to the generator changes its output, so cached weights trained on an
# older version are not mistaken for current ones.
PHANTOM_VERSION = 1
DEFAULT_ORGANS = 8
# Organs of the phantoms that train and score the wide-headed networks (the 117-class 2D
# pipelines of the champion and whole-CT benchmarks, the 118-output 3D --fast network). One
# organ per output channel (116) was tried first: the organs' HU levels then sit ~1.3 HU apart,
# under the pixel noise, and each organ is a few pixels across at the training size, so no
# network learnt them in the minutes a 2-core run can spend (Dice 0.03-0.09), and a Dice from an
# untrained network cannot tell a good runtime or output path from a bad one. With 16 organs
# the original recipe reaches Dice ~0.86 in two minutes of training. The networks keep their
# full heads (speed depends on the head's width, not on what the data holds): the channels no
# organ uses are trained towards "never". Organs here are larger than many real structures
# (TotalSegmentator's ribs and vessels), so Dice losses that come from boundaries (a coarse
# output path) would be larger on real CT than here; docs/champion.md says so.
WIDE_HEAD_ORGANS = 16

# HU ranges every tissue's level is drawn from (the noiseless map stays inside them).
AIR_HU = -1000.0
FAT_HU = (-120.0, -80.0)
MUSCLE_HU = (35.0, 55.0)
SOFT_TISSUE_HU = (20.0, 45.0)
CANAL_HU = (5.0, 20.0)  # cerebrospinal fluid in the spinal canal
ORGAN_HU = (100.0, 250.0)  # contrast-enhanced organs; each label has its own level inside this
VESSEL_HU = (180.0, 300.0)  # the aorta in a contrast phase
MARROW_HU = (400.0, 550.0)  # cancellous bone
CORTEX_HU = (700.0, 1000.0)  # cortical bone and ribs
CT_RANGE = (-1024.0, 3071.0)  # what a 12-bit scanner can store; the noisy image is clipped to it

ORGAN_LEVEL_JITTER = 6.0  # HU a sample's organ level may move from its atlas level
ORGAN_TEXTURE = 8.0  # HU of smooth texture inside organs, at most
NOISE_SIGMA = (8.0, 18.0)  # HU of pixel noise, drawn per sample
BLUR_SIGMA = (0.5, 0.9)  # pixels of partial-volume blur, drawn per sample

# The model input: the HU image through three windows, one channel each (the timm encoders
# expect three channels). Wide shows air/fat/tissue/bone, soft-tissue (W400 L40) the usual
# abdominal view, and the narrow one separates the enhanced organs from each other.
WINDOWS: tuple[tuple[float, float], ...] = ((-1000.0, 1000.0), (-160.0, 240.0), (50.0, 300.0))

# Seeds of the splits: index i of a split is seed SPLIT_BASES[split] + i, with i < SPLIT_SIZE,
# so the splits cannot share a phantom however many samples anyone asks for.
SPLIT_SIZE = 10**9
SPLIT_BASES = {"train": 0, "eval": SPLIT_SIZE, "calibration": 2 * SPLIT_SIZE}

# Coarse resolutions (control points across the image) of the random fields.
BODY_CELLS, ORGAN_CELLS, TEXTURE_CELLS, VISCERAL_CELLS = 5, 7, 12, 10


@dataclass(frozen=True)
class Atlas:
    """What each organ label is, the same for every seed: it gives labels their identity.

    Positions are in units of the body's semi-axes (so organs follow the body's size), radii in
    normalised coordinates for an average body; ``hu`` is each organ's HU level.
    """

    centres: np.ndarray  # (K, 2) home (y, x)
    radii: np.ndarray  # (K,)
    elongations: np.ndarray  # (K,) ratio of the long to the short axis
    angles: np.ndarray  # (K,) in-plane orientation, radians
    lobes: np.ndarray  # (K,) how many ellipses make the organ
    hu: np.ndarray  # (K,)

    @property
    def organs(self) -> int:
        return len(self.hu)


@functools.lru_cache(maxsize=8)
def make_atlas(organs: int = DEFAULT_ORGANS) -> Atlas:
    """The fixed organ identities for ``organs`` labels.

    Homes follow a sunflower (Vogel) spiral over the front of the abdomen, which spreads any
    number of organs evenly; HU levels are spaced evenly over ORGAN_HU but assigned in a fixed
    shuffled order, so neighbouring organs do not also have neighbouring levels.
    """
    if organs < 1:
        raise ValueError(f"organs must be at least 1, got {organs}")
    rng = np.random.default_rng(20240601 + organs)
    golden = np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt((np.arange(organs) + 0.5) / organs)
    theta = np.arange(organs) * golden
    centres = np.stack([-0.1 + 0.5 * r * np.cos(theta), 0.6 * r * np.sin(theta)], axis=1)
    # an organ's share of the interior (area ~1.2 for an average body): organs fill most of it
    base = np.sqrt(0.6 * 1.2 / (np.pi * organs))
    lo, hi = ORGAN_HU[0] + 15.0, ORGAN_HU[1] - 15.0
    levels = np.linspace(lo, hi, organs) if organs > 1 else np.array([(lo + hi) / 2])
    arrays = {"centres": centres, "radii": base * rng.uniform(0.75, 1.2, organs),
              "elongations": rng.uniform(1.0, 2.0, organs),
              "angles": rng.uniform(0.0, np.pi, organs),
              "lobes": rng.integers(1, 4, organs), "hu": rng.permutation(levels)}
    for a in arrays.values():
        a.flags.writeable = False  # the atlas is cached and shared: nobody may edit it
    return Atlas(**arrays)


@dataclass
class Phantom:
    """One generated slice or volume."""

    hu: np.ndarray  # float32, what the scanner gives: blurred, noisy, clipped to CT_RANGE
    labels: np.ndarray  # int64, 0 = everything that is not an organ, 1..K organs
    clean: np.ndarray  # float32, noiseless unblurred tissue map the labels describe exactly
    body: np.ndarray  # bool, inside the body outline
    organ_hu: np.ndarray  # (K,) this sample's HU level of each organ (before texture)
    seed: int


@dataclass(frozen=True)
class _Grid:
    """Normalised pixel-centre coordinates, broadcastable (np.ogrid style) to ``shape``."""

    shape: tuple[int, ...]
    coords: tuple[np.ndarray, ...]

    @property
    def y(self) -> np.ndarray:
        return self.coords[-2]

    @property
    def x(self) -> np.ndarray:
        return self.coords[-1]

    @property
    def z(self) -> np.ndarray | None:
        return self.coords[0] if len(self.shape) == 3 else None


def _grid(shape: Sequence[int]) -> _Grid:
    shape = tuple(int(n) for n in shape)
    coords = []
    for axis, n in enumerate(shape):
        c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
        view = [1] * len(shape)
        view[axis] = n
        coords.append(c.reshape(view))
    return _Grid(shape, tuple(coords))


def _basis(n: int, cells: int) -> np.ndarray:
    """(n, cells) Gaussian interpolation weights, rows of unit L2 norm.

    Unit-norm rows make the interpolated field of i.i.d. unit normals have unit variance
    everywhere, whatever the output size: the field's amplitude means the same at 64 or 512 px.
    """
    x = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    centres = np.linspace(-1.2, 1.2, cells)
    width = centres[1] - centres[0]
    w = np.exp(-0.5 * ((x[:, None] - centres[None, :]) / width) ** 2)
    return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """A smooth random field of unit variance, drawn at ``cells`` points per axis."""
    field = rng.standard_normal((cells,) * len(shape)).astype(np.float32)
    letters = "abc"[: len(shape)]
    for axis, n in enumerate(shape):
        # one axis at a time (the interpolation is separable); einsum rather than matmul keeps
        # BLAS threads out: on a busy 2-core machine they cost 5x more than the work itself
        source = letters.replace(letters[axis], "z")
        field = np.einsum(f"{letters[axis]}z,{source}->{letters}", _basis(n, cells), field)
    return field


def _ellipse_level(grid: _Grid, centre: Sequence[float], radii: Sequence[float],
                   angle: float = 0.0, z: tuple[float, float] | None = None) -> np.ndarray:
    """1 - (elliptic distance from ``centre``): 1 at the centre, 0 on the outline.

    ``radii`` are (along, across) the in-plane direction ``angle`` (0 = along y); ``z`` is an
    optional (centre, radius) that closes the shape along a volume's first axis; without it a
    volume extrudes the ellipse. A level rather than a mask lets shapes be deformed by adding a
    smooth field and compete with each other by comparing levels.
    """
    # python floats keep the arithmetic in the grid's float32
    dy, dx = grid.y - float(centre[0]), grid.x - float(centre[1])
    c, s = float(np.cos(angle)), float(np.sin(angle))
    u = (c * dy + s * dx) / float(radii[0])
    v = (-s * dy + c * dx) / float(radii[1])
    dist2 = u * u + v * v
    if z is not None and grid.z is not None:
        dist2 = dist2 + ((grid.z - float(z[0])) / float(z[1])) ** 2
    return 1.0 - np.sqrt(dist2)


@dataclass
class _Body:
    semi_axes: tuple[float, float]  # (y, x)
    fat_depth: float
    muscle_depth: float
    body: np.ndarray
    muscle: np.ndarray
    interior: np.ndarray


def _body(rng: np.random.Generator, grid: _Grid) -> _Body:
    """The outline and the fat/muscle/interior shells, as level sets of one deformed ellipse."""
    ay, ax = rng.uniform(0.58, 0.72), rng.uniform(0.82, 0.93)
    outline = 0.04 * _smooth_field(rng, grid.shape, BODY_CELLS)
    level = _ellipse_level(grid, (0.0, 0.0), (ay, ax)) + outline
    fat_depth, muscle_depth = rng.uniform(0.06, 0.13), rng.uniform(0.05, 0.08)
    fat_edge = fat_depth + 0.02 * _smooth_field(rng, grid.shape, BODY_CELLS)
    body = level > 0
    inner = level > fat_edge
    interior = level > fat_edge + muscle_depth
    return _Body((ay, ax), fat_depth, muscle_depth, body, inner & ~interior, interior)


@dataclass
class _Bones:
    cortex: np.ndarray
    marrow: np.ndarray
    canal: np.ndarray
    aorta: np.ndarray

    @property
    def occupied(self) -> np.ndarray:
        """Where organs may not be."""
        return self.cortex | self.marrow | self.canal | self.aorta


def _spine_and_vessels(rng: np.random.Generator, grid: _Grid, body: _Body) -> _Bones:
    """Vertebra (body, arch, spinous process), ribs and aorta, placed from the body's shells."""
    ay = body.semi_axes[0]
    back = ay * (1.0 - body.fat_depth - body.muscle_depth)  # posterior edge of the interior
    ry, rx = 0.075 * rng.uniform(0.9, 1.1), 0.09 * rng.uniform(0.9, 1.1)
    cy, cx = back - 0.1, rng.uniform(-0.02, 0.02)
    vertebra = _ellipse_level(grid, (cy, cx), (ry, rx))
    arch = _ellipse_level(grid, (cy + ry + 0.035, cx), (0.045, 0.055))
    process = _ellipse_level(grid, (cy + ry + 0.1, cx), (0.05, 0.018))
    canal = arch > 0.4
    cortex = ((vertebra > 0) & (vertebra < 0.25)) | ((arch > 0) & ~canal) | (process > 0)
    marrow = vertebra >= 0.25
    cortex = (cortex | _ribs(rng, grid, body)) & body.body
    aorta_r = rng.uniform(0.035, 0.05)
    aorta = _ellipse_level(grid, (cy - ry - aorta_r - 0.015, cx + 0.06), (aorta_r, aorta_r)) > 0
    # in a volume the extruded shapes are (1, H, W): give every mask the full shape
    full = [np.broadcast_to(m, grid.shape) for m in (cortex, marrow, canal, aorta & ~cortex)]
    return _Bones(*full)


def _ribs(rng: np.random.Generator, grid: _Grid, body: _Body) -> np.ndarray:
    """Rib cross-sections along the middle of the muscle wall, on both sides.

    In a volume each rib shows only in bands along z, as ribs run obliquely through slices.
    """
    ay, ax = body.semi_axes
    mid = 1.0 - body.fat_depth - body.muscle_depth / 2
    count = int(rng.integers(3, 6))  # per side
    ribs = np.zeros(grid.shape, dtype=bool)
    for side in (-1.0, 1.0):
        for phi in np.sort(rng.uniform(0.3 * np.pi, 0.85 * np.pi, count)):
            # phi = 0 is straight back (spine side), pi straight ahead
            centre = (ay * mid * np.cos(phi), side * ax * mid * np.sin(phi))
            rib = _ellipse_level(grid, centre, (0.02, 0.045), angle=side * (np.pi / 2 - phi)) > 0
            if grid.z is not None:
                rib = rib & (np.cos(2 * np.pi * rng.uniform(1.0, 2.0) * grid.z
                                    + rng.uniform(0, 2 * np.pi)) > 0.2)
            ribs |= rib
    return ribs


def _organs(rng: np.random.Generator, grid: _Grid, body: _Body, allowed: np.ndarray,
            atlas: Atlas) -> tuple[np.ndarray, np.ndarray]:
    """Label map of the organs and this sample's HU level of each.

    Every organ is a deformed level function; a pixel belongs to the organ with the highest
    positive level, so neighbours share a smooth boundary instead of one painting over the
    other, and every organ keeps its core.
    """
    ay, ax = body.semi_axes
    scale = np.sqrt(ay * ax / (0.65 * 0.875))  # organs follow the body's size
    best = np.zeros(grid.shape, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.int64)
    for k in range(atlas.organs):
        centre = atlas.centres[k] * (ay, ax) + rng.uniform(-0.05, 0.05, 2)
        radius = atlas.radii[k] * scale * rng.uniform(0.85, 1.2)
        stretch = np.sqrt(atlas.elongations[k] * rng.uniform(0.9, 1.1))
        angle = atlas.angles[k] + rng.uniform(-0.3, 0.3)
        z = (rng.uniform(-0.4, 0.4), rng.uniform(0.5, 1.0)) if grid.z is not None else None
        level = _ellipse_level(grid, centre, (radius * stretch, radius / stretch), angle, z)
        for _ in range(int(atlas.lobes[k]) - 1):
            direction = rng.uniform(0, 2 * np.pi)
            offset = 0.7 * radius * np.array([np.cos(direction), np.sin(direction)])
            lobe_r = radius * rng.uniform(0.5, 0.8)
            lobe = _ellipse_level(grid, centre + offset, (lobe_r, lobe_r * rng.uniform(0.6, 1.0)),
                                  rng.uniform(0, np.pi), z)
            level = np.maximum(level, lobe)
        level = level + 0.15 * _smooth_field(rng, grid.shape, ORGAN_CELLS)
        wins = (level > best) & allowed
        best[wins] = level[wins]
        labels[wins] = k + 1
    organ_hu = atlas.hu + rng.uniform(-ORGAN_LEVEL_JITTER, ORGAN_LEVEL_JITTER, atlas.organs)
    return labels, organ_hu


def _tissue_map(rng: np.random.Generator, grid: _Grid, atlas: Atlas
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The noiseless HU map, its organ labels, the body mask and the organs' HU levels."""
    body = _body(rng, grid)
    bones = _spine_and_vessels(rng, grid, body)
    visceral_fat = _smooth_field(rng, grid.shape, VISCERAL_CELLS) > 1.0
    texture = np.clip(5.0 * _smooth_field(rng, grid.shape, TEXTURE_CELLS), -ORGAN_TEXTURE,
                      ORGAN_TEXTURE)
    labels, organ_hu = _organs(rng, grid, body, body.interior & ~bones.occupied, atlas)

    clean = np.full(grid.shape, AIR_HU, dtype=np.float32)
    clean[body.body] = rng.uniform(*FAT_HU)
    clean[body.muscle] = rng.uniform(*MUSCLE_HU)
    clean[body.interior & ~visceral_fat] = rng.uniform(*SOFT_TISSUE_HU)
    clean[bones.canal] = rng.uniform(*CANAL_HU)
    clean[bones.aorta] = rng.uniform(*VESSEL_HU)
    clean[bones.marrow] = rng.uniform(*MARROW_HU)
    clean[bones.cortex] = rng.uniform(*CORTEX_HU)
    organ = labels > 0
    clean[organ] = organ_hu[labels[organ] - 1] + texture[organ]
    return clean, labels, body.body, organ_hu


def _scan(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    """What a scanner would show: partial-volume blur, then noise, clipped to the CT range."""
    blurred = ndimage.gaussian_filter(clean, rng.uniform(*BLUR_SIGMA), mode="nearest")
    noise = rng.uniform(*NOISE_SIGMA) * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.clip(blurred + noise, *CT_RANGE).astype(np.float32)


def _make(shape: tuple[int, ...], seed: int, organs: int) -> Phantom:
    if min(shape) < 16:
        raise ValueError(f"phantom sides must be at least 16 pixels, got {shape}")
    rng = np.random.default_rng(seed)
    clean, labels, body, organ_hu = _tissue_map(rng, _grid(shape), make_atlas(organs))
    return Phantom(_scan(rng, clean), labels, clean, body, organ_hu, seed)


def make_slice(size: int | tuple[int, int], seed: int, organs: int = DEFAULT_ORGANS) -> Phantom:
    """A 2D axial slice of ``size`` x ``size`` pixels (or (H, W)); same seed, same phantom."""
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) != 2:
        raise ValueError(f"a slice has two sides, got {shape}")
    return _make(shape, seed, organs)


def make_volume(shape: int | tuple[int, int, int], seed: int,
                organs: int = DEFAULT_ORGANS) -> Phantom:
    """A 3D volume (D, H, W): the slice anatomy extruded along z with organs closed as
    ellipsoids, outlines deformed in 3D and ribs in bands; same seed, same phantom."""
    shape = (shape,) * 3 if isinstance(shape, int) else tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"a volume has three sides, got {shape}")
    return _make(shape, seed, organs)


def window(hu: np.ndarray, lo: float = -1000.0, hi: float = 1000.0) -> np.ndarray:
    """A CT display window as a network input: clip to [lo, hi], then map linearly to [-1, 1].

    Exactly ``(clip(hu, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2)``: the window's centre goes
    to 0 and its edges to -1 and +1. A fixed transform (rather than per-image statistics) keeps
    HU meaning the same in every image, as CT pipelines do (nnU-Net clips and rescales CT with
    data-set-wide numbers for the same reason).
    """
    if hi <= lo:
        raise ValueError(f"window needs lo < hi, got {lo}, {hi}")
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    return ((np.clip(hu, lo, hi) - centre) / half).astype(np.float32)


def to_input(hu: np.ndarray, windows: Sequence[tuple[float, float]] = WINDOWS) -> np.ndarray:
    """(..., H, W) HU -> (..., len(windows), H, W) float32: one channel per window."""
    return np.stack([window(hu, lo, hi) for lo, hi in windows], axis=-3)


def split_seed(split: str, index: int) -> int:
    """The seed of phantom ``index`` of ``split``; splits map to disjoint seed ranges."""
    if split not in SPLIT_BASES:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_BASES)}")
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"index {index} outside a split's range [0, {SPLIT_SIZE})")
    return SPLIT_BASES[split] + index


def split_of(seed: int) -> str:
    """Which split a seed belongs to (the inverse of :func:`split_seed`)."""
    for split, base in SPLIT_BASES.items():
        if base <= seed < base + SPLIT_SIZE:
            return split
    raise ValueError(f"seed {seed} belongs to no split")
