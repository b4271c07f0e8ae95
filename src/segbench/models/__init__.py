"""WHAT is measured: every network the benchmarks time, behind one factory.

A model is named by a :class:`ModelSpec` (family + name + classes); :func:`build_model` turns
it into an ``nn.Module`` ready for inference: seeded random weights, BatchNorm statistics
settled, RepVGG/MobileOne branches fused, eval mode. Families live in their own modules and
know nothing about runtimes or timing.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

DEFAULT_CLASSES = 117  # TotalSegmentator's label count
WEIGHT_SEED = 0
INPUT_SEED = 1234

# family key -> module that defines FAMILY; imported lazily so a 2D run never imports 3D code
FAMILY_MODULES = {
    "encoder": "segbench.models.encoders",
    "fpn": "segbench.models.seg2d",
    "unet": "segbench.models.seg2d",
    "smp-fpn": "segbench.models.seg2d",
    "smp-unet": "segbench.models.seg2d",
    "3d": "segbench.models.nets3d",
    "testing": "segbench.models.testing",
    "3d-phantom": "segbench.models.nets3d_phantom",  # a "3d" network trained on CT phantoms
    "fpn-labels": "segbench.models.pipeline",
    "probe": "segbench.models.pipeline",
    "nnunet-folder": "segbench.models.nnunet_folder",  # a user's nnU-Net v2 model folder
    "onnx-file": "segbench.models.onnx_file",  # a user's ONNX file (a stand-in; see there)
}


class Family(Protocol):
    dims: int  # spatial dimensions of the input: 2 or 3
    size_multiple: int  # every spatial size must be a multiple of this

    def names(self) -> list[str]: ...

    def build(self, name: str, classes: int, **options: Any) -> nn.Module: ...

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]: ...


@dataclass
class ModelSpec:
    family: str
    name: str
    classes: int = DEFAULT_CLASSES
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.family in ("encoder", "3d", "testing"):
            return self.name
        return f"{self.name}+{self.family}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(**data)

    @classmethod
    def from_label(cls, label: str, classes: int = DEFAULT_CLASSES,
                   default_family: str = "3d") -> "ModelSpec":
        """The inverse of ``label``: "resnet18+fpn" -> fpn family, anything else -> default."""
        name, _, fam = label.partition("+")
        return cls(fam or default_family, name, classes)


def family(key: str) -> Family:
    if key not in FAMILY_MODULES:
        raise KeyError(f"unknown model family {key!r}; valid: {', '.join(FAMILY_MODULES)}")
    module = importlib.import_module(FAMILY_MODULES[key])
    return module.FAMILIES[key]


TRAINING_OPTIONS = ("train",)  # options that choose weights, not structure


def structure_options(spec: ModelSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.options.items() if k not in TRAINING_OPTIONS}


def training_spec(spec: ModelSpec) -> ModelSpec:
    """The network that is trained to give ``spec`` its weights: itself, or for a family that
    cannot be trained alone (``trained_through``, e.g. an encoder) the segmentation network
    around it, with the same name, classes and options."""
    through = getattr(family(spec.family), "trained_through", None)
    if through is None:
        return spec
    return ModelSpec(through, spec.name, spec.classes, dict(spec.options))


def build_model(spec: ModelSpec) -> nn.Module:
    """The network of ``spec``, deterministic for a given spec, in eval mode.

    Random weights by default. ``spec.options["train"]`` is a training recipe (keyword
    arguments of :func:`segbench.train.train_or_load`, e.g. steps, size): the network is then
    trained on CT phantoms from its random init, or loaded from the weights cache when that
    recipe already ran, before its branches are fused for inference. A family trained through
    another (see :func:`training_spec`) takes its part of that trained network
    (``from_trained``).
    """
    recipe = spec.options.get("train")
    if recipe is None:
        torch.manual_seed(WEIGHT_SEED)
        return family(spec.family).build(spec.name, spec.classes,
                                         **structure_options(spec)).eval()
    trainee = training_spec(spec)
    if trainee is not spec:
        trained = build_model(trainee)
        return family(spec.family).from_trained(spec.name, trained).eval()
    from segbench.train import train_or_load

    model = build_trainable(spec)
    train_or_load(model, spec.label, classes=spec.classes, **recipe)
    return reparameterize(model.eval()).eval()


def build_trainable(spec: ModelSpec) -> nn.Module:
    """The network before BatchNorm settling and branch fusing: what training starts from."""
    fam = family(spec.family)
    if not hasattr(fam, "build_untrained"):
        raise ValueError(f"family {spec.family!r} cannot be trained here")
    torch.manual_seed(WEIGHT_SEED)
    return fam.build_untrained(spec.name, spec.classes, **structure_options(spec))


def describe_model(spec: ModelSpec) -> dict[str, Any]:
    """Extra facts a table may show (e.g. params of the timm model with its classifier)."""
    return family(spec.family).describe(spec.name, spec.classes, **structure_options(spec))


def input_shape(spec: ModelSpec, size: int | tuple[int, ...], batch: int,
                channels: int = 3) -> tuple[int, ...]:
    fam = family(spec.family)
    spatial = (size,) * fam.dims if isinstance(size, int) else tuple(size)
    if spec.family == "3d":
        channels = 1
    return (batch, channels, *spatial)


def make_input(shape: tuple[int, ...], seed: int = INPUT_SEED) -> torch.Tensor:
    """The fixed input of a cell, made before any clock starts."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen)


def settle_batchnorm(model: nn.Module, example: torch.Tensor, steps: int = 2) -> None:
    """Give BatchNorm layers the statistics of their own activations.

    With random weights and the default running statistics (mean 0, var 1) activations grow
    layer after layer in eval mode; timings do not care, but fidelity does (an INT8 or bf16
    error is only meaningful on activations of a sane scale). A couple of train-mode passes with
    a cumulative average fix the scale, as a trained network would have it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or any(p.is_meta for p in model.parameters()):
        return  # on the meta device (memory estimates) there are no statistics to settle
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(example)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse train-time branches (RepVGG, MobileOne, FastViT...) into single convs."""
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model)

