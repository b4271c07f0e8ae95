"""Give a 2D network something to have learned, so precision and runtime losses can be scored.

On random weights logits are nearly tied and any perturbation flips labels, which overstates
what bf16 or INT8 would cost a real model. Training briefly on phantoms (segbench.data) gives
decisive logits and a ground truth: :func:`evaluate` scores any runtime's output against the
phantoms' labels, not only against FP32 eager.

Weights are stored with safetensors (no pickle) in ``cache/weights`` under a name made of every
training argument and the phantom version, so the same request reuses the same file and a
changed generator never serves stale weights.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from segbench import progress
from segbench.data.dataset import PhantomDataset
from segbench.data.phantom import PHANTOM_VERSION, WIDE_HEAD_ORGANS
from segbench.quality import organ_dice

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "cache" / "weights"
SEED_STREAM = 10**6  # training phantoms per seed: seed s trains on train indices s*SEED_STREAM...
DICE_SMOOTH = 1.0


@dataclass
class TrainResult:
    """What a training run did: its arguments and the loss of every step."""

    steps: int
    batch: int
    size: int
    lr: float
    seed: int
    classes: int
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps (one step is too noisy to report)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return float(np.mean(tail)) if tail else math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_recipe(quick: bool, size: int) -> dict[str, Any]:
    """The training every 2D network of a speed table gets (and the champion's): 250 steps of
    8 phantoms at 128 px, then 25 steps of 2 at the table's input ``size`` so BatchNorm and the
    receptive field have seen full-size slices; wide heads learn the 16-organ phantoms
    (``WIDE_HEAD_ORGANS``). ``quick`` is a smoke-test recipe of a few steps at 64 px."""
    if quick:
        return {"steps": 8, "batch": 4, "size": 64, "lr": 3e-3, "seed": 0,
                "finetune": {"steps": 2, "size": size, "batch": 1}, "organs": WIDE_HEAD_ORGANS}
    return {"steps": 250, "batch": 8, "size": 128, "lr": 3e-3, "seed": 0,
            "finetune": {"steps": 25, "size": size, "batch": 2}, "organs": WIDE_HEAD_ORGANS}


def data_organs(classes: int, organs: int | None) -> int:
    """How many organs the phantoms of a ``classes``-channel network have: ``organs``, or one
    per foreground channel."""
    if organs is None:
        return classes - 1
    if not 1 <= organs <= classes - 1:
        raise ValueError(f"organs must be 1..{classes - 1} for {classes} classes, got {organs}")
    return organs


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, organs: int | None = None
                   ) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes 1..``organs`` (all of them by default),
    pooled over the batch.

    Cross-entropy alone is dominated by the background (most pixels); the Dice term weighs
    every organ equally, which is what the evaluation scores. Pooling over the batch and a
    smoothing of 1 keep classes absent from a batch from producing 0/0. A head wider than the
    data's organs (see :func:`train`) scores only the organs the data has: channels no pixel
    ever carries would otherwise dilute the term with Dice 1 each.
    """
    last = logits.shape[1] - 1 if organs is None else organs
    probs = logits.softmax(dim=1)[:, 1:last + 1]
    onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1)[:, 1:last + 1].to(probs.dtype)
    dims = (0, *range(2, logits.dim()))
    overlap = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return 1.0 - dice.mean()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, organs: int | None = None
                      ) -> torch.Tensor:
    """Cross-entropy + soft Dice, the usual pair for medical segmentation (nnU-Net's default)."""
    return F.cross_entropy(logits, labels) + soft_dice_loss(logits, labels, organs)


def _schedule(steps: int) -> Callable[[int], float]:
    """Linear warm-up over 5 % of the steps, then cosine decay to zero.

    A short fixed budget ends at a small learning rate, so the last weights are settled rather
    than wherever the last large step threw them.
    """
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def train(model: nn.Module, steps: int = 300, batch: int = 8, size: int = 128,
          lr: float = 3e-3, seed: int = 0, classes: int = 9, *, weight_decay: float = 1e-4,
          log_every: int = 50, organs: int | None = None) -> TrainResult:
    """Train ``model`` ((N, 3, H, W) -> (N, classes, H, W) logits) in place on phantom slices.

    Deterministic for a given seed: ``torch.manual_seed(seed)`` and a fixed data order (step
    i sees train phantoms ``seed * SEED_STREAM + i * batch`` onwards, all freshly generated, so
    no sample is seen twice). The model is trained in train mode and left in eval mode, as
    :func:`segbench.models.build_model` hands it over. Progress goes to stderr: a bar with an
    ETA on a terminal (the mean loss of the last ``log_every`` steps beside it), otherwise a
    line every ``log_every`` steps; 0 turns both off.

    ``organs`` is how many organs the phantoms have (default ``classes - 1``: one channel per
    label). Fewer organs than channels keeps the head, and so the speed, of a wide network
    while training it on phantoms it can learn: the extra channels are trained towards "never".
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    organs = data_organs(classes, organs)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    torch.manual_seed(seed)
    data = PhantomDataset("train", size, steps * batch, organs=organs,
                          start=seed * SEED_STREAM)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps))
    result = TrainResult(steps, batch, size, lr, seed, classes)
    shown = progress.bar(steps, f"train {size} px", "steps", quiet=not log_every)
    model.train()
    try:
        for step in range(steps):
            images, labels = data.batch(step * batch, batch)
            logits = model(torch.from_numpy(images))
            if logits.shape[1] != classes:
                raise ValueError(f"model gives {logits.shape[1]} channels, expected {classes}")
            loss = segmentation_loss(logits, torch.from_numpy(labels), organs)
            optimise_step(loss, optimizer, scheduler, result.losses, shown, log_every, "train")
    finally:
        shown.close()
        model.eval()
    return result


def optimise_step(loss: torch.Tensor, optimizer: Any, scheduler: Any, losses: list[float],
                  shown: Any, log_every: int, label: str) -> None:
    """One optimiser step on ``loss`` and its progress: the loss appended to ``losses``, every
    ``log_every`` steps the recent mean on the bar (a plain ``label step i/n`` line without a
    terminal), the bar advanced. Shared by the 2D and 3D phantom training loops."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    losses.append(float(loss.detach()))
    step = len(losses)
    if log_every and step % log_every == 0:
        recent = np.mean(losses[-log_every:])
        if shown.disable:  # no terminal: a plain line now and then
            print(f"{label} step {step}/{shown.total} loss {recent:.4f}", file=sys.stderr,
                  flush=True)
        else:
            shown.set_postfix_str(f"loss {recent:.4f}", refresh=False)
    shown.update(1)


def _labels_of(output: Any, classes: int) -> np.ndarray:
    """Labels ``(N, H, W)`` from a runtime's output: logits ``(N, classes, H, W)`` (argmax), or
    already a label map ``(N, H, W)`` of integers (a pipeline ending in its own argmax)."""
    if isinstance(output, (list, tuple)) and len(output) == 1:
        output = output[0]
    if isinstance(output, torch.Tensor):
        if output.dim() == 3 and not output.is_floating_point():
            return output.numpy().astype(np.int64)
    elif np.ndim(output) == 3 and not np.issubdtype(np.asarray(output).dtype, np.floating):
        return np.asarray(output).astype(np.int64)
    from segbench.runtimes import to_numpy  # only to score outputs; building imports no runtime

    logits = to_numpy(output)
    if logits.shape[1] != classes:
        raise ValueError(f"predict gives {logits.shape[1]} channels, expected {classes}")
    return logits.argmax(axis=1)


def evaluate(predict: Callable[[torch.Tensor], Any], n: int = 32, size: int = 128,
             seed: int = 0, classes: int = 9, batch: int = 1, organs: int | None = None
             ) -> dict[str, Any]:
    """Dice of ``predict``'s argmax against the phantom labels of the held-out eval split.

    ``predict`` is any callable from a float32 (batch, 3, H, W) tensor to logits (a tensor, a
    numpy array or a one-element tuple of them), or to an integer label map (batch, H, W), so
    every runtime and output path is scored the same way. It is
    always called with exactly ``batch`` images, since runtimes prepared for a static shape
    accept nothing else; a short last batch is padded with repeats that are then dropped.
    The eval phantoms are indices ``seed`` .. ``seed + n - 1`` of the eval split.

    Dice is pooled over all ``n`` slices per organ (a small organ cut at a slice edge would make
    per-slice Dice erratic), then averaged over organs. ``organs`` as in :func:`train`.
    """
    data = PhantomDataset("eval", size, n, organs=data_organs(classes, organs), start=seed)
    refs, outs = [], []
    for images, labels in data.batches(batch):
        real = len(images)
        if real < batch:
            images = np.concatenate([images, np.repeat(images[-1:], batch - real, axis=0)])
        outs.append(_labels_of(predict(torch.from_numpy(images)), classes)[:real])
        refs.append(labels)
    dice = organ_dice(np.concatenate(refs), np.concatenate(outs))
    return {"mean_dice": float(np.mean(list(dice.values()))) if dice else math.nan,
            "dice": dice, "n": n, "size": size, "split": "eval", "first_index": seed,
            "organs": data_organs(classes, organs), "phantom_version": PHANTOM_VERSION}


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
                 ) -> Path:
    """The model's state dict as a safetensors file, written atomically.

    Tensors are cloned so that weights shared between modules are stored once each (safetensors
    refuses shared storage); load_state_dict restores them into the shared parameter.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a :func:`save_weights` file into ``model`` (strict: every tensor must match)."""
    model.load_state_dict(load_file(str(path)), strict=True)
    return model


def weights_path(name: str, steps: int, batch: int, size: int, lr: float, seed: int,
                 classes: int, directory: str | Path | None = None,
                 organs: int | None = None) -> Path:
    """Where the weights of one training request live; the name holds every argument."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    organs_tag = "" if organs in (None, classes - 1) else f"-o{organs}"
    stem = (f"{slug}-c{classes}{organs_tag}-steps{steps}-b{batch}-px{size}-lr{lr:g}-seed{seed}"
            f"-phantom{PHANTOM_VERSION}")
    return Path(directory or WEIGHTS_DIR) / f"{stem}.safetensors"


def finetune_path(base: Path, finetune: dict[str, Any]) -> Path:
    """Where the fine-tuned weights of a cached base training live."""
    tag = "-".join(f"{k}{finetune[k]:g}" if isinstance(finetune[k], float) else f"{k}{finetune[k]}"
                   for k in sorted(finetune))
    return base.with_name(f"{base.stem}-ft-{tag}{base.suffix}")


def cached_path(name: str, classes: int = 9, steps: int = 300, batch: int = 8, size: int = 128,
                lr: float = 3e-3, seed: int = 0, directory: str | Path | None = None,
                finetune: dict[str, Any] | None = None, organs: int | None = None) -> Path:
    """The file :func:`train_or_load` loads for this request (same arguments and defaults):
    the fine-tuned weights when ``finetune`` is given. Lets a run say before any work which
    networks it will have to train."""
    path = weights_path(name, steps, batch, size, lr, seed, classes, directory, organs)
    return finetune_path(path, finetune) if finetune else path


def train_or_load(model: nn.Module, name: str, steps: int = 300, batch: int = 8,
                  size: int = 128, lr: float = 3e-3, seed: int = 0, classes: int = 9,
                  directory: str | Path | None = None, log_every: int = 50,
                  finetune: dict[str, Any] | None = None, organs: int | None = None) -> Path:
    """Load the cached weights of this request into ``model``, training and caching on a miss.

    ``name`` must identify the architecture (e.g. ``ModelSpec.label`` plus anything that
    changes its structure): the cache key cannot see inside the model.

    ``finetune`` (keys ``steps``, ``size``, optional ``batch``, ``lr``) continues the cached
    base training at another size, e.g. a short pass at 512 after training at 128 (full-size
    training from scratch is slow on a small CPU). It trains on fresh phantoms (seed + 1), and
    both the base and the fine-tuned weights are cached. ``organs`` as in :func:`train`.
    """
    path = weights_path(name, steps, batch, size, lr, seed, classes, directory, organs)
    if finetune:
        final = finetune_path(path, finetune)
        if final.exists():
            load_weights(model, final)
            return final
        train_or_load(model, name, steps, batch, size, lr, seed, classes, directory, log_every,
                      organs=organs)
        result = train(model, finetune["steps"], finetune.get("batch", batch), finetune["size"],
                       finetune.get("lr", lr / 3), seed + 1, classes, log_every=log_every,
                       organs=organs)
        meta = {k: str(v) for k, v in result.to_dict().items() if k != "losses"}
        meta.update(name=name, final_loss=f"{result.final_loss:.6f}", base=path.name,
                    phantom_version=str(PHANTOM_VERSION))
        return save_weights(model, final, meta)
    if path.exists():
        load_weights(model, path)
        return path
    result = train(model, steps, batch, size, lr, seed, classes, log_every=log_every,
                   organs=organs)
    meta = {k: str(v) for k, v in result.to_dict().items() if k != "losses"}
    meta.update(name=name, final_loss=f"{result.final_loss:.6f}",
                phantom_version=str(PHANTOM_VERSION))
    return save_weights(model, path, meta)
