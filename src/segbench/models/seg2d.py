"""2D segmentation networks: a timm encoder, a decoder, a 1x1 head, one nn.Module.

Four families share the encoder list of :mod:`segbench.models.encoders`:

- ``fpn`` / ``unet``: our decoders (:mod:`segbench.models.decoders`), sized like the originals;
- ``smp-fpn`` / ``smp-unet``: segmentation_models_pytorch's FPN and Unet on the same timm
  encoders (``tu-<name>``), as a widely used reference implementation to compare against.

Every model exposes ``.encoder`` (image -> feature maps) so the harness can time the encoder's
share of a forward pass on its own.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from segbench.footprint import count_params
from segbench.models import reparameterize
from segbench.models.decoders import SemanticFPN, UNetDecoder
from segbench.models.encoders import ENCODERS, EncoderOnly, create_backbone, prepare_for_inference

Decoder = SemanticFPN | UNetDecoder

# Encoders a decoder cannot take, and why; the tests check each reason still holds.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "unet": {"edgenext_x_small": "its stem patchifies by 4, so there is no stride-2 feature "
                                 "for the first UNet skip"},
    "fpn": {},
}


class Seg2D(nn.Module):
    """Encoder -> decoder -> 1x1 head -> bilinear upsample to the input size (if needed).

    Kept as separate modules, the smp way, so the head's parameters stay out of the
    encoder + decoder totals the originals reported and the encoder can be timed alone.
    """

    def __init__(self, encoder: nn.Module, decoder: Decoder, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = nn.Conv2d(decoder.out_channels, classes, 1)
        stride = decoder.output_stride
        self.upsample: nn.Module = (
            nn.Upsample(scale_factor=float(stride), mode="bilinear", align_corners=False)
            if stride > 1 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.head(self.decoder(self.encoder(x))))


def _encoder_for(name: str, decoder_cls: type[Decoder]) -> EncoderOnly:
    """The timm backbone at exactly the strides the decoder consumes, or a clear error."""
    backbone = create_backbone(name, out_indices=decoder_cls.out_indices)
    reductions = tuple(backbone.feature_info.reduction())
    if reductions != decoder_cls.reductions:
        raise ValueError(f"{name} gives features at strides {reductions}; "
                         f"{decoder_cls.__name__} needs {decoder_cls.reductions}")
    return EncoderOnly(backbone)


def _check_supported(key: str, name: str) -> None:
    reason = UNSUPPORTED.get(key, {}).get(name)
    if reason is not None:
        raise ValueError(f"{name} cannot be used with {key}: {reason}")


def build_seg2d(name: str, classes: int, decoder_cls: type[Decoder], **options: Any) -> Seg2D:
    """An unprepared Seg2D (training-mode BatchNorm stats, unfused branches)."""
    encoder = _encoder_for(name, decoder_cls)
    decoder = decoder_cls(encoder.backbone.feature_info.channels(), **options)
    return Seg2D(encoder, decoder, classes)


def _split_counts(encoder: nn.Module, decoder: nn.Module, head: nn.Module) -> dict[str, int]:
    enc, dec = count_params(encoder), count_params(decoder)
    return {"encoder_params": enc, "decoder_params": dec, "head_params": count_params(head),
            "params_enc_dec": enc + dec}


class Seg2DFamily:
    """``fpn`` or ``unet``: our decoder on a timm encoder."""

    dims = 2
    size_multiple = 32

    def __init__(self, key: str, decoder_cls: type[Decoder], label: str) -> None:
        self.key = key
        self.decoder_cls = decoder_cls
        self.label = label

    def names(self) -> list[str]:
        return [n for n in ENCODERS if n not in UNSUPPORTED[self.key]]

    def build_untrained(self, name: str, classes: int, **options: Any) -> Seg2D:
        _check_supported(self.key, name)
        return build_seg2d(name, classes, self.decoder_cls, **options)

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        return prepare_for_inference(self.build_untrained(name, classes, **options))

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        """Parameter split after reparameterisation; no forward pass (fusing needs none)."""
        model = reparameterize(self.build_untrained(name, classes, **options).eval())
        return {"display": f"{ENCODERS.get(name, name)} + {self.label}",
                **_split_counts(model.encoder, model.decoder, model.head)}


class SmpFamily:
    """``smp-fpn`` or ``smp-unet``: segmentation_models_pytorch on the same timm encoder.

    smp's timm-universal encoder copes with encoders lacking a stride-2 level (it inserts an
    empty feature), so every encoder of the list works. ``encoder_weights=None`` keeps it
    offline. The model is smp's own: ``.encoder``, ``.decoder``, ``.segmentation_head``.
    """

    dims = 2
    size_multiple = 32

    def __init__(self, factory: Callable[..., nn.Module], label: str) -> None:
        self.factory = factory
        self.label = label

    def names(self) -> list[str]:
        return list(ENCODERS)

    def build_untrained(self, name: str, classes: int, **options: Any) -> nn.Module:
        return self.factory(encoder_name=f"tu-{name}", encoder_weights=None, classes=classes,
                            **options)

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        return prepare_for_inference(self.build_untrained(name, classes, **options))

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        model = reparameterize(self.build_untrained(name, classes, **options).eval())
        return {"display": f"{ENCODERS.get(name, name)} + {self.label}",
                **_split_counts(model.encoder, model.decoder, model.segmentation_head)}


def _smp(arch: str) -> Callable[..., nn.Module]:
    """smp's constructor, imported on first use: smp is slow to import and optional here."""

    def factory(**kwargs: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(**kwargs)

    return factory


FAMILIES = {
    "fpn": Seg2DFamily("fpn", SemanticFPN, "FPN"),
    "unet": Seg2DFamily("unet", UNetDecoder, "UNet"),
    "smp-fpn": SmpFamily(_smp("FPN"), "smp FPN"),
    "smp-unet": SmpFamily(_smp("Unet"), "smp UNet"),
}
