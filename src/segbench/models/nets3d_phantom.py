"""Trained weights for the 3D network of the whole-CT benchmark: TotalSegmentator --fast's
architecture, trained briefly on 3 mm CT phantoms.

Random weights give near-tied logits, so a bf16 or INT8 runtime's Dice drop on them says
nothing. The 2D networks are trained on phantom slices (``segbench.train``); this module does
the same for the 3 mm network on phantom volumes, in random patches, with the same loss
(cross-entropy + soft Dice over the phantom's organs). The network keeps all 118 outputs; the
channels beyond the phantom's labels only learn to stay low. Weights are cached in cache/
(safetensors), keyed by every argument of the recipe.

Family "3d-phantom" builds a "3d" network and loads those weights, so that a cell runs the
trained network through the ordinary harness (``ModelSpec("3d-phantom", "totalseg-3mm", 118,
{"recipe": {...}})``); a missing cache entry is trained on the spot (the benchmark trains in
an explicit step before any cell, so this is a fallback).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench import progress
from segbench.data.phantom import WIDE_HEAD_ORGANS
from segbench.train import (
    WEIGHTS_DIR,
    load_weights,
    optimise_step,
    save_weights,
    segmentation_loss,
)

TRAINABLE = ("totalseg-3mm",)


@dataclass(frozen=True)
class Recipe3D:
    """How the 3 mm network is trained: ``steps`` of ``batch`` random ``patch``^3 crops from
    ``volumes`` phantom volumes of ``grid`` (z, y, x) voxels at 3 mm."""

    steps: int = 120
    batch: int = 2
    patch: int = 64
    volumes: int = 8
    grid: tuple[int, int, int] = (140, 133, 133)  # a 512x512x280 CT at 0.78/1.5 mm, at 3 mm
    lr: float = 2e-3
    seed: int = 0
    organs: int = WIDE_HEAD_ORGANS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe3D":
        data = dict(data)
        if "grid" in data:
            data["grid"] = tuple(data["grid"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = list(self.grid)
        return data

    def label(self) -> str:
        return (f"trained on 3 mm phantom volumes ({self.steps} steps, batch {self.batch}, "
                f"{self.patch}^3 patches, {self.volumes} volumes)")


def weights_path(name: str, classes: int, recipe: Recipe3D, directory: Path | None = None
                 ) -> Path:
    from segbench.data.phantom import PHANTOM_VERSION

    r = recipe
    stem = (f"{name}-3d-c{classes}-steps{r.steps}-b{r.batch}-p{r.patch}-v{r.volumes}"
            f"-g{'x'.join(map(str, r.grid))}-lr{r.lr:g}-seed{r.seed}-o{r.organs}"
            f"-phantom{PHANTOM_VERSION}")
    return Path(directory or WEIGHTS_DIR) / f"{stem}.safetensors"


def training_volumes(recipe: Recipe3D) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised (z, y, x) inputs and labels of train-split phantom volumes at 3 mm."""
    from segbench.data.phantom import make_volume, split_seed
    from segbench.pipelines.resample import CT_NORMALISATION

    out = []
    for i in range(recipe.volumes):
        p = make_volume(recipe.grid, split_seed("train", 500_000 + recipe.seed * 1000 + i),
                        recipe.organs)
        out.append((CT_NORMALISATION.apply(p.hu.astype(np.float32)), p.labels.astype(np.int64)))
    return out


def train_3d(model: nn.Module, recipe: Recipe3D, log_every: int = 20) -> list[float]:
    """Train ``model`` in place on random crops; deterministic for a recipe. Progress as in
    :func:`segbench.train.train` (a bar on a terminal, lines otherwise, 0: silent)."""
    rng = np.random.default_rng(recipe.seed)
    torch.manual_seed(recipe.seed)
    data = training_volumes(recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.steps,
                                                pct_start=0.1)
    p = recipe.patch
    losses: list[float] = []
    shown = progress.bar(recipe.steps, f"train 3d {p}^3", "steps", quiet=not log_every)
    model.train()
    try:
        for _ in range(recipe.steps):
            xs, ys = [], []
            for _ in range(recipe.batch):
                image, labels = data[rng.integers(len(data))]
                starts = [int(rng.integers(0, max(1, s - p + 1))) for s in image.shape]
                crop = tuple(slice(s, s + p) for s in starts)
                xs.append(image[crop])
                ys.append(labels[crop])
            x = torch.from_numpy(np.stack(xs))[:, None]
            y = torch.from_numpy(np.stack(ys))
            loss = segmentation_loss(model(x), y, recipe.organs)
            optimise_step(loss, opt, sched, losses, shown, log_every, "train 3d")
    finally:
        shown.close()
        model.eval()
    return losses


def build_untrained(name: str, classes: int) -> nn.Module:
    from segbench.models import WEIGHT_SEED, family

    if name not in TRAINABLE:
        raise KeyError(f"no phantom training for 3D network {name!r}; valid: "
                       f"{', '.join(TRAINABLE)}")
    torch.manual_seed(WEIGHT_SEED)
    return family("3d").build(name, classes)


def train_or_load(name: str, classes: int, recipe: Recipe3D, log_every: int = 20
                  ) -> tuple[nn.Module, Path]:
    """The trained network, from the cache or trained now and cached."""
    model = build_untrained(name, classes)
    path = weights_path(name, classes, recipe)
    if path.exists():
        load_weights(model, path)
        return model.eval(), path
    losses = train_3d(model, recipe, log_every)
    meta = {k: str(v) for k, v in recipe.to_dict().items()}
    meta.update(name=name, classes=str(classes), final_loss=f"{np.mean(losses[-10:]):.6f}")
    save_weights(model, path, meta)
    return model.eval(), path


class Phantom3DFamily:
    """Family "3d-phantom": a "3d" network with its phantom-trained weights."""

    dims = 3
    size_multiple = 16

    def names(self) -> list[str]:
        return list(TRAINABLE)

    def build(self, name: str, classes: int, recipe: dict[str, Any] | None = None
              ) -> nn.Module:
        model, _ = train_or_load(name, classes, Recipe3D.from_dict(recipe or {}))
        return model

    def describe(self, name: str, classes: int, recipe: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        from segbench.models import family

        facts = family("3d").describe(name, classes)
        facts["weights_3d"] = Recipe3D.from_dict(recipe or {}).label()
        return facts


FAMILIES = {"3d-phantom": Phantom3DFamily()}
