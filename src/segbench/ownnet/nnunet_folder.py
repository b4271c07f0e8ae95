"""A user's trained nnU-Net v2 model folder as the network of a whole-CT pipeline.

An nnU-Net v2 model folder (``<Trainer>__<Plans>__<configuration>``, TotalSegmentator's
downloaded weights are such folders too) holds ``plans.json`` (architecture, patch, target
spacing, normalisation, resampling), ``dataset.json`` (channels, labels) and one
``fold_<F>/checkpoint_final.pth`` per fold. :func:`read_folder` checks all of it before any
work and refuses in one line naming the file (:class:`segbench.cli.UsageError`): a missing
plans or checkpoint, a checkpoint that is not a state dict (or needs unpickling code: it is
loaded with ``weights_only=True`` or refused), a plans file naming an architecture that cannot
be found, a region-based or cascaded model, more than one input channel. :func:`build_network`
builds the network the plans name through ``dynamic_network_architectures`` (plain and
residual encoders alike) and loads the checkpoint's weights, strictly.

No nnU-Net import here: nnU-Net's own pre- and post-processing, used by the pipeline, live in
:mod:`segbench.pipelines.nnunet`.
"""

from __future__ import annotations

import functools
import json
import pydoc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.cli import UsageError

PLANS = "plans.json"
DATASET = "dataset.json"
CHECKPOINT = "checkpoint_final.pth"


@dataclass(frozen=True)
class ModelFolder:
    """What one fold of a model folder is: its files and the parts of its plans a pipeline
    needs. ``configuration`` is resolved (``inherits_from`` followed)."""

    path: Path
    fold: str
    configuration: str
    checkpoint: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    config: dict[str, Any]  # plans["configurations"][configuration], inheritance resolved
    trainer: str
    mirror_axes: tuple[int, ...] | None  # what the checkpoint allows at inference

    @property
    def patch(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.config["patch_size"])

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.config["spacing"])

    @property
    def classes(self) -> int:
        return len(self.dataset["labels"])

    @property
    def architecture(self) -> dict[str, Any]:
        return self.config["architecture"]

    @property
    def name(self) -> str:
        return self.path.parent.name or self.path.name

    def describe(self) -> dict[str, Any]:
        """What a row says about the model (JSON-able)."""
        arch = self.architecture["network_class_name"].rsplit(".", 1)[-1]
        return {"model_folder": self.path.name, "dataset": self.path.parent.name,
                "fold": self.fold, "configuration": self.configuration,
                "trainer": self.trainer, "architecture": arch, "patch": list(self.patch),
                "spacing_mm": list(self.spacing), "classes": self.classes,
                "mirror_axes": list(self.mirror_axes) if self.mirror_axes else None,
                "normalisation": list(self.config.get("normalization_schemes", []))}


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path}: missing (an nnU-Net v2 model folder holds {PLANS}, "
                         f"{DATASET} and fold_<F>/{CHECKPOINT})")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
    return data


def _configuration(plans: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """A configuration with ``inherits_from`` resolved (nnU-Net's ConfigurationManager does
    the same merge)."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        valid = ", ".join(configs) if isinstance(configs, dict) else "none"
        raise UsageError(f"{path}: no configuration {name!r} (it has: {valid})")
    config = dict(configs[name])
    seen = {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise UsageError(f"{path}: configuration {name!r} inherits from {parent!r}, "
                             "which is missing or circular")
        seen.add(parent)
        config = {**configs[parent], **config}
    return config


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint, loaded with ``weights_only=True`` (no code is unpickled), checked to
    hold a state dict under ``network_weights``."""
    import torch

    if not path.is_file():
        raise UsageError(f"{path}: missing checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal becomes the user's one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not loadable with weights_only=True ({first[:160]}); "
                         "only plain state-dict checkpoints are read") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"),
                                                          dict):
        raise UsageError(f"{path}: not an nnU-Net checkpoint (no 'network_weights' state dict)")
    weights = checkpoint["network_weights"]
    if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise UsageError(f"{path}: 'network_weights' is not a state dict of tensors")
    return checkpoint


def _configuration_name(path: Path, checkpoint: dict[str, Any], given: str | None) -> str:
    """The configuration to run: as given; else the checkpoint's (what nnUNetPredictor uses);
    else the folder name's third part (``Trainer__Plans__configuration``)."""
    if given:
        return given
    init = checkpoint.get("init_args")
    if isinstance(init, dict) and isinstance(init.get("configuration"), str):
        return init["configuration"]
    parts = path.name.split("__")
    if len(parts) == 3:
        return parts[2]
    raise UsageError(f"{path}: cannot tell the configuration; give --configuration")


def locate(name: str, what: str, path: Path) -> Any:
    """A class named in the plans (dotted path), or a one-line refusal naming the file."""
    found = pydoc.locate(name) if isinstance(name, str) and name else None
    if found is None:
        raise UsageError(f"{path}: {what} {name!r} cannot be imported (unknown architecture)")
    return found


def _check_architecture(config: dict[str, Any], path: Path) -> None:
    from torch import nn

    arch = config.get("architecture")
    if not isinstance(arch, dict) or "network_class_name" not in arch:
        raise UsageError(f"{path}: the configuration names no architecture (an nnU-Net v2 "
                         "plans file from before 2.3 is not supported)")
    cls = locate(arch["network_class_name"], "architecture", path)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"{path}: architecture {arch['network_class_name']!r} is not a "
                         "network class")
    for key in arch.get("_kw_requires_import", []):
        value = arch.get("arch_kwargs", {}).get(key)
        if value is not None:
            locate(value, f"{key}", path)


def read_folder(path: str | Path, fold: str = "0", configuration: str | None = None,
                checkpoint_name: str = CHECKPOINT) -> ModelFolder:
    """Check a model folder and one of its folds; one line naming the file if it is wrong."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"{path}: not a folder (give an nnU-Net v2 model folder)")
    plans = _json(path / PLANS)
    dataset = _json(path / DATASET)
    fold_dir = path / f"fold_{fold}"
    if not fold_dir.is_dir():
        folds = sorted(p.name for p in path.glob("fold_*") if p.is_dir())
        raise UsageError(f"{fold_dir}: missing (folds here: {', '.join(folds) or 'none'})")
    checkpoint = load_checkpoint(fold_dir / checkpoint_name)
    name = _configuration_name(path, checkpoint, configuration)
    config = _configuration(plans, name, path / PLANS)
    for key in ("patch_size", "spacing"):
        if key not in config:
            raise UsageError(f"{path / PLANS}: configuration {name!r} has no {key}")
    if len(config["patch_size"]) != 3:
        raise UsageError(f"{path / PLANS}: configuration {name!r} is not 3D (patch "
                         f"{config['patch_size']}); only 3D configurations run here")
    if config.get("previous_stage"):
        raise UsageError(f"{path / PLANS}: configuration {name!r} is a cascade stage (needs "
                         f"{config['previous_stage']!r} first); not supported")
    _check_architecture(config, path / PLANS)
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or len(labels) < 2:
        raise UsageError(f"{path / DATASET}: no labels (background and at least one class)")
    if "regions_class_order" in dataset or any(
            isinstance(v, (list, tuple)) for v in labels.values()):
        raise UsageError(f"{path / DATASET}: a region-based model; not supported")
    channels = dataset.get("channel_names") or dataset.get("modality") or {}
    if len(channels) != 1:
        raise UsageError(f"{path / DATASET}: {len(channels)} input channels; only single-"
                         "channel (CT) models run here")
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return ModelFolder(path=path, fold=str(fold), configuration=name,
                       checkpoint=fold_dir / checkpoint_name, plans=plans, dataset=dataset,
                       config=config, trainer=str(checkpoint.get("trainer_name", "")),
                       mirror_axes=tuple(int(a) for a in axes) if axes else None)


def build_network(folder: ModelFolder, weights: bool = True) -> Any:
    """The network the plans name (``dynamic_network_architectures``), with the checkpoint's
    weights loaded strictly (``weights=False``: the structure only), in eval mode."""
    arch = folder.architecture
    kwargs = dict(arch.get("arch_kwargs", {}))
    for key in arch.get("_kw_requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = locate(kwargs[key], key, folder.path / PLANS)
    cls = locate(arch["network_class_name"], "architecture", folder.path / PLANS)
    channels = len(folder.dataset.get("channel_names") or folder.dataset.get("modality"))
    import inspect

    if "deep_supervision" in inspect.signature(cls).parameters:
        kwargs["deep_supervision"] = False  # inference: the full-resolution output only
    try:
        net = cls(input_channels=channels, num_classes=folder.classes, **kwargs)
    except TypeError as exc:
        raise UsageError(f"{folder.path / PLANS}: the architecture's arguments do not fit "
                         f"({exc})") from None
    if weights:
        state = load_checkpoint(folder.checkpoint)["network_weights"]
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise UsageError(f"{folder.checkpoint}: weights do not fit the plans' network "
                             f"({' '.join(first[:2])[:200]})") from None
    return net.eval()


@functools.lru_cache(maxsize=4)
def cached_folder(path: str, fold: str, configuration: str, checkpoint_name: str
                  ) -> ModelFolder:
    """:func:`read_folder` once per process (a worker asks for it several times per cell)."""
    return read_folder(path, fold, configuration or None, checkpoint_name)
