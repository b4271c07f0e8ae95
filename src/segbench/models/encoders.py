"""timm encoders with ``features_only=True``: the backbones every 2D network here is built on."""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from segbench.footprint import count_params
from segbench.models import make_input, reparameterize, settle_batchnorm

# Every encoder of the original documents' encoder tables, plus EfficientNet-B0 as a common
# reference. Keys are timm names; --models takes them as they are.
ENCODERS: dict[str, str] = {
    "mobileone_s0": "MobileOne S0",
    "mobileone_s1": "MobileOne S1",
    "regnetx_002": "RegNetX-002",
    "regnetx_004": "RegNetX-004",
    "regnety_002": "RegNetY-002",
    "mobilenetv3_small_100": "MobileNetV3 Small",
    "mobilenetv4_conv_small": "MobileNetV4-Conv-Small",
    "mobilenetv4_conv_medium": "MobileNetV4-Conv-Medium",
    "edgenext_x_small": "EdgeNeXt X-Small",
    "mobilenetv2_100": "MobileNetV2",
    "lcnet_100": "LCNet 100",
    "resnet18": "ResNet18",
    "repvgg_a0": "RepVGG-A0",
    "efficientnet_b0": "EfficientNet-B0",
}

SETTLE_SHAPE = (2, 3, 128, 128)


def create_backbone(name: str, out_indices: tuple[int, ...] | None = None) -> nn.Module:
    """A timm features_only backbone with random weights (nothing is downloaded)."""
    kwargs: dict[str, Any] = {"pretrained": False, "features_only": True}
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    return timm.create_model(name, **kwargs)


def prepare_for_inference(model: nn.Module, settle_shape: tuple[int, ...] = SETTLE_SHAPE
                          ) -> nn.Module:
    """Settle BatchNorm statistics, then fuse reparameterisable branches, then eval.

    Order matters: reparameterisation folds BatchNorm into the convs, so statistics must be
    final first.
    """
    settle_batchnorm(model, make_input(settle_shape, seed=7))
    model = reparameterize(model.eval())
    return model.eval()


class EncoderOnly(nn.Module):
    """The backbone alone; returns its feature maps, coarsest last."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


class EncoderFamily:
    dims = 2
    size_multiple = 32

    def names(self) -> list[str]:
        return list(ENCODERS)

    # an encoder has no labels to learn: trained weights are those of the encoder of the same
    # name inside a Semantic FPN trained on phantoms (models.training_spec)
    trained_through = "fpn"

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        return EncoderOnly(prepare_for_inference(create_backbone(name)))

    def from_trained(self, name: str, trained: nn.Module) -> nn.Module:
        """This family's encoder (every feature level) with the weights of ``trained.encoder``,
        a trained, fused segmentation network's encoder of the same name. The FPN's backbone
        returns fewer levels but holds the same layers, so the weights load strictly; a
        mismatch raises rather than leave a layer random."""
        backbone = reparameterize(create_backbone(name).eval())
        backbone.load_state_dict(trained.encoder.backbone.state_dict(), strict=True)
        return EncoderOnly(backbone).eval()

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        """Params of the full timm classifier, reparameterised, as the originals counted them."""
        full = reparameterize(timm.create_model(name, pretrained=False).eval())
        return {"display": ENCODERS.get(name, name), "params_with_head": count_params(full)}


FAMILIES = {"encoder": EncoderFamily()}
