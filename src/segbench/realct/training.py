"""Train the compared networks on a labelled CT data set, each with the same CPU budget.

2D against 3D is only a fair comparison at an equal training budget. The budget here is CPU
time of this process (``measure.CpuBudget``: N core-minutes, all threads together), the same
for every network, so that other work on a shared machine takes wall time, not training, away
from a network. Each network trains from its random init with the loss the project uses
everywhere (cross-entropy + soft Dice over the data set's organs, ``train.segmentation_loss``),
AdamW, a 5 % warm-up and a cosine decay over the budget (the schedule follows the CPU time
spent, so the learning rate reaches zero when the budget does).

- 2D: batches of axial slices of the training cases through the display windows the 2D
  pipelines use (``data.phantom.to_input``); two thirds of the slices hold an organ.
- 3D: random patches of the training cases resampled to the network's spacing exactly as the
  whole-CT pipeline resamples (``pipelines.resample.resample_image``, cubic; labels by
  nearest), with nnU-Net's CT normalisation of the pipeline
  (``pipelines.resample.CT_NORMALISATION``); half of the patches are centred on an organ voxel
  (nnU-Net oversamples the foreground too).

No augmentation: a short budget is better spent on the data itself. Weights go to the cache
(safetensors) under a name holding the data set, its training cases and every argument.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.realct.dataset import Volume
from segbench.train import WEIGHTS_DIR, load_weights, save_weights, segmentation_loss

WARMUP = 0.05


@dataclass(frozen=True)
class Recipe:
    """How one network trains: ``core_minutes`` of CPU time, batches of ``batch`` slices (2D)
    or ``patch`` crops (3D, (z, y, x) voxels), AdamW at ``lr``."""

    core_minutes: float
    batch: int
    lr: float = 2e-3
    patch: tuple[int, int, int] | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patch"] = list(self.patch) if self.patch else None
        return data


@dataclass
class Trained:
    """What a training did (also what a cached file says it did)."""

    path: Path
    steps: int
    cpu_s: float
    final_loss: float
    cached: bool = False
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.path.name, "steps": self.steps, "cpu_s": round(self.cpu_s, 1),
                "final_loss": round(self.final_loss, 4), "cached": self.cached}


def cases_digest(names: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()[:10]


def weights_path(method: str, dataset: str, cases: Sequence[str], classes: int, recipe: Recipe,
                 directory: Path | None = None) -> Path:
    slug = "".join(ch if ch.isalnum() else "-" for ch in dataset.lower()).strip("-")[:40]
    patch = "x".join(map(str, recipe.patch)) if recipe.patch else "slices"
    stem = (f"realct-{method}-{slug}-{cases_digest(cases)}-c{classes}-cm{recipe.core_minutes:g}"
            f"-b{recipe.batch}-{patch}-lr{recipe.lr:g}-seed{recipe.seed}")
    return Path(directory or WEIGHTS_DIR) / f"{stem}.safetensors"


def _lr_factor(fraction: float) -> float:
    if fraction < WARMUP:
        return max(0.05, fraction / WARMUP)
    return 0.5 * (1.0 + math.cos(math.pi * (fraction - WARMUP) / (1.0 - WARMUP)))


class SliceSampler:
    """Random axial slices (N, 3, H, W) and labels (N, H, W) of the training volumes."""

    def __init__(self, volumes: Sequence[Volume], seed: int, pad_to: int = 32) -> None:
        self.volumes = list(volumes)
        self.rng = np.random.default_rng(seed)
        self.pad_to = pad_to
        self.organ_slices = [np.flatnonzero(v.labels.reshape(v.labels.shape[0], -1).any(1))
                             for v in self.volumes]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        from segbench.data.phantom import to_input

        images, labels = [], []
        for _ in range(n):
            i = int(self.rng.integers(len(self.volumes)))
            vol, organ = self.volumes[i], self.organ_slices[i]
            if len(organ) and self.rng.random() < 2 / 3:
                z = int(self.rng.choice(organ))
            else:
                z = int(self.rng.integers(vol.hu.shape[0]))
            images.append(pad_slices(vol.hu[z:z + 1], self.pad_to, -1024.0)[0])
            labels.append(pad_slices(vol.labels[z:z + 1], self.pad_to, 0)[0])
        x = to_input(np.stack(images))
        return torch.from_numpy(x), torch.from_numpy(np.stack(labels).astype(np.int64))


def pad_slices(x: np.ndarray, multiple: int, value: float) -> np.ndarray:
    """(N, H, W) padded at the bottom/right to multiples of ``multiple`` (FPN strides)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], constant_values=value)


@dataclass
class Grid3D:
    """A training case on the 3D network's grid: normalised image and labels (z, y, x)."""

    image: np.ndarray
    labels: np.ndarray


def to_network_grid(volume: Volume, spacing_mm: float) -> Grid3D:
    """A case resampled and normalised as the whole-CT 3D pipeline does it before the network."""
    from scipy import ndimage

    from segbench.pipelines.resample import CT_NORMALISATION, resample_image
    from segbench.tiling import target_shape

    shape = target_shape(volume.hu.shape, volume.spacing, spacing_mm)
    image = CT_NORMALISATION.apply(resample_image(volume.hu, shape))
    factors = [t / s for t, s in zip(shape, volume.labels.shape)]
    labels = ndimage.zoom(volume.labels, factors, order=0, mode="nearest", grid_mode=True)
    labels = labels[tuple(slice(0, s) for s in shape)]
    labels = np.pad(labels, [(0, t - s) for t, s in zip(shape, labels.shape)], mode="edge")
    return Grid3D(image, labels.astype(np.uint8))


class PatchSampler:
    """Random (N, 1, *patch) crops and (N, *patch) labels; half centred on an organ voxel."""

    def __init__(self, grids: Sequence[Grid3D], patch: Sequence[int], seed: int) -> None:
        self.grids = list(grids)
        self.patch = tuple(int(p) for p in patch)
        self.rng = np.random.default_rng(seed)

    def _crop(self, g: Grid3D) -> tuple[np.ndarray, np.ndarray]:
        pads = [(0, max(0, p - s)) for p, s in zip(self.patch, g.image.shape)]
        image = np.pad(g.image, pads, mode="constant", constant_values=float(g.image.min()))
        labels = np.pad(g.labels, pads)
        if self.rng.random() < 0.5 and labels.any():
            fg = np.argwhere(labels > 0)
            centre = fg[int(self.rng.integers(len(fg)))]
            starts = [int(np.clip(c - p // 2, 0, s - p))
                      for c, p, s in zip(centre, self.patch, image.shape)]
        else:
            starts = [int(self.rng.integers(0, s - p + 1)) for p, s in zip(self.patch, image.shape)]
        sl = tuple(slice(s, s + p) for s, p in zip(starts, self.patch))
        return image[sl], labels[sl]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        crops = [self._crop(self.grids[int(self.rng.integers(len(self.grids)))]) for _ in range(n)]
        x = np.stack([c[0] for c in crops])[:, None]
        y = np.stack([c[1] for c in crops]).astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def train_within(model: nn.Module, sampler: Any, recipe: Recipe, classes: int,
                 progress: str = "") -> tuple[int, float, list[float]]:
    """Train ``model`` in place until ``recipe.core_minutes`` of CPU time are spent.

    Returns (steps, CPU seconds, losses). A tqdm bar on stderr shows the budget spent, with
    an ETA.
    """
    from tqdm import tqdm

    from segbench.measure import CpuBudget

    torch.manual_seed(recipe.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=1e-4)
    budget = CpuBudget(recipe.core_minutes * 60.0)
    losses: list[float] = []
    model.train()
    bar = tqdm(total=100, desc=progress or "train", unit="%", file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| budget [{elapsed}<{remaining}]"
                          "{postfix}", mininterval=2.0)
    try:
        while not budget.spent:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * _lr_factor(budget.fraction)
            x, y = sampler.batch(recipe.batch)
            logits = model(x)
            if logits.shape[1] != classes:
                raise ValueError(f"model gives {logits.shape[1]} channels, expected {classes}")
            loss = segmentation_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update(int(budget.fraction * 100) - bar.n)
            bar.set_postfix_str(f"step {len(losses)} loss {np.mean(losses[-20:]):.3f}",
                                refresh=False)
    finally:
        bar.close()
        model.eval()
    return len(losses), budget.used, losses


def train_or_load(model: nn.Module, path: Path, sampler_factory: Any, recipe: Recipe,
                  classes: int, progress: str = "") -> Trained:
    """Cached weights of this request, or a training within its budget (then cached)."""
    if path.exists():
        from safetensors import safe_open

        load_weights(model, path)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return Trained(path, int(meta.get("steps", 0)), float(meta.get("cpu_s", "nan")),
                       float(meta.get("final_loss", "nan")), cached=True)
    steps, cpu_s, losses = train_within(model, sampler_factory(), recipe, classes, progress)
    tail = losses[-max(1, len(losses) // 10):]
    final = float(np.mean(tail)) if tail else math.nan
    meta = {"steps": str(steps), "cpu_s": f"{cpu_s:.1f}", "final_loss": f"{final:.6f}",
            **{k: str(v) for k, v in recipe.to_dict().items()}}
    save_weights(model, path, meta)
    return Trained(path, steps, cpu_s, final, losses=losses)
