"""2D segmentation models: shapes, the originals' parameter totals, reparameterisation, encoder.

Tiny inputs (64x64, 2 classes); parameter counts use ``describe``, which needs no forward pass.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch

from segbench.models import ModelSpec, build_model, reparameterize, settle_batchnorm
from segbench.models.decoders import SemanticFPN, UNetDecoder
from segbench.models.encoders import ENCODERS, create_backbone
from segbench.models.seg2d import FAMILIES, UNSUPPORTED, build_seg2d

CLASSES = 2

# The originals' tables: encoder + decoder params in millions, classifier excluded.
UNET_TABLE = {
    "mobilenetv4_conv_small": 4.31,
    "mobilenetv3_small_100": 3.41,
    "mobilenetv4_conv_medium": 10.43,
    "resnet18": 14.24,
    "mobileone_s0": 4.63,
}
FPN_TABLE = {
    "mobilenetv4_conv_small": 2.15,
    "resnet18": 12.04,
    "mobilenetv4_conv_medium": 8.10,
    "mobileone_s0": 1.98,
    "regnetx_002": 3.13,
}


@lru_cache(maxsize=None)
def _built(family: str, name: str) -> torch.nn.Module:
    """Ready models are shared between tests: building settles BatchNorm with a forward pass."""
    return FAMILIES[family].build(name, CLASSES)


def _input(batch: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family,name,batch,height,width", [
    ("fpn", "mobilenetv4_conv_small", 2, 64, 64),
    ("fpn", "edgenext_x_small", 1, 64, 96),
    ("fpn", "repvgg_a0", 1, 96, 64),
    ("unet", "mobilenetv4_conv_small", 2, 64, 64),
    ("unet", "resnet18", 1, 64, 96),
    ("unet", "mobileone_s0", 1, 32, 32),
    ("smp-fpn", "mobilenetv4_conv_small", 1, 64, 64),
    ("smp-unet", "mobilenetv3_small_100", 2, 64, 96),
    ("smp-unet", "edgenext_x_small", 1, 64, 64),
])
def test_output_is_one_logit_map_per_class_at_input_size(family, name, batch, height, width):
    model = _built(family, name)
    with torch.no_grad():
        out = model(_input(batch, height, width))
    assert out.shape == (batch, CLASSES, height, width)
    assert torch.isfinite(out).all()


def test_build_through_the_registry_is_deterministic_and_in_eval_mode():
    spec = ModelSpec("fpn", "mobilenetv3_small_100", classes=3)
    first, second = build_model(spec), build_model(spec)
    assert not first.training
    x = _input(1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))


@pytest.mark.parametrize("name,millions", UNET_TABLE.items())
def test_unet_totals_match_the_originals_table(name, millions):
    info = FAMILIES["unet"].describe(name, 117)
    assert info["params_enc_dec"] == info["encoder_params"] + info["decoder_params"]
    assert round(info["params_enc_dec"] / 1e6, 2) == millions


@pytest.mark.parametrize("name,millions", FPN_TABLE.items())
def test_fpn_totals_match_the_originals_table(name, millions):
    info = FAMILIES["fpn"].describe(name, 117)
    assert abs(info["params_enc_dec"] / 1e6 - millions) <= 0.03 * millions
    # the chosen variant lands on the printed digits, not just within 3 %
    assert round(info["params_enc_dec"] / 1e6, 2) == millions


def test_head_is_counted_apart_and_scales_with_classes():
    two = FAMILIES["unet"].describe("mobilenetv4_conv_small", 2)
    many = FAMILIES["unet"].describe("mobilenetv4_conv_small", 117)
    assert two["params_enc_dec"] == many["params_enc_dec"]
    assert many["head_params"] == 32 * 117 + 117
    assert many["display"] == "MobileNetV4-Conv-Small + UNet"


def test_pyramid_width_is_an_option():
    narrow = FAMILIES["fpn"].describe("mobilenetv3_small_100", CLASSES, pyramid_channels=64)
    default = FAMILIES["fpn"].describe("mobilenetv3_small_100", CLASSES)
    assert narrow["decoder_params"] < default["decoder_params"]
    assert narrow["head_params"] == 64 * CLASSES + CLASSES
    model = FAMILIES["fpn"].build("mobilenetv3_small_100", CLASSES, pyramid_channels=64)
    with torch.no_grad():
        assert model(_input(1, 64, 64)).shape == (1, CLASSES, 64, 64)


def _relative_change_on_fusing(model: torch.nn.Module, dtype: torch.dtype) -> float:
    """Max |after - before| / max |before| of a copy of ``model`` around reparameterisation."""
    model = copy.deepcopy(model).to(dtype).eval()
    x = _input(1, 64, 64).to(dtype)
    with torch.no_grad():
        before = model(x)
        fused = reparameterize(model).eval()
        after = fused(x)
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())
    return ((after - before).abs().max() / before.abs().max()).item()


@pytest.mark.parametrize("name,decoder_cls", [("repvgg_a0", SemanticFPN),
                                              ("mobileone_s0", SemanticFPN),
                                              ("mobileone_s0", UNetDecoder)])
def test_reparameterisation_keeps_the_output(name, decoder_cls):
    torch.manual_seed(0)
    model = build_seg2d(name, CLASSES, decoder_cls)
    settle_batchnorm(model, _input(2, 64, 64))
    # In float64 fusion is exact up to rounding: a wrong fold would show at any precision.
    assert _relative_change_on_fusing(model, torch.float64) < 1e-9
    # In float32 the rounding of the folded weights is amplified through MobileOne-S0's deep
    # random-weight stages to ~3e-4 of the output scale (RepVGG-A0: ~1e-6); 1e-3 bounds it.
    assert _relative_change_on_fusing(model, torch.float32) < 1e-3


@pytest.mark.parametrize("family,name,strides", [
    ("fpn", "mobilenetv4_conv_small", (4, 8, 16, 32)),
    ("fpn", "edgenext_x_small", (4, 8, 16, 32)),
    ("unet", "mobileone_s0", (2, 4, 8, 16, 32)),
])
def test_encoder_alone_returns_what_the_decoder_consumes(family, name, strides):
    model = _built(family, name)
    x = _input(1, 64, 64)
    with torch.no_grad():
        features = model.encoder(x)
        assert [64 // f.shape[-1] for f in features] == list(strides)
        rebuilt = model.upsample(model.head(model.decoder(features)))
        torch.testing.assert_close(rebuilt, model(x))


def test_smp_encoder_is_timed_alone_like_ours():
    model = _built("smp-fpn", "mobilenetv4_conv_small")
    x = _input(1, 64, 64)
    with torch.no_grad():
        features = model.encoder(x)
        rebuilt = model.segmentation_head(model.decoder(features))
        torch.testing.assert_close(rebuilt, model(x))
    info = FAMILIES["smp-fpn"].describe("mobilenetv4_conv_small", CLASSES)
    assert info["display"] == "MobileNetV4-Conv-Small + smp FPN"
    assert info["params_enc_dec"] == info["encoder_params"] + info["decoder_params"]


def test_family_names_are_exactly_the_encoders_that_fit():
    for key in ("fpn", "unet", "smp-fpn", "smp-unet"):
        fam = FAMILIES[key]
        assert (fam.dims, fam.size_multiple) == (2, 32)
    assert FAMILIES["fpn"].names() == list(ENCODERS)
    assert FAMILIES["smp-unet"].names() == list(ENCODERS)
    unet = FAMILIES["unet"].names()
    assert set(unet) == set(ENCODERS) - set(UNSUPPORTED["unet"])
    for name in ENCODERS:
        strides = tuple(create_backbone(name).feature_info.reduction())
        assert (strides == UNetDecoder.reductions) == (name in unet), name


def test_unsupported_encoder_says_why():
    with pytest.raises(ValueError, match="stride-2"):
        FAMILIES["unet"].build("edgenext_x_small", CLASSES)


def test_decoder_channels_must_give_one_width_per_skip():
    with pytest.raises(ValueError, match="one width per skip"):
        UNetDecoder((16, 16, 24, 48, 576), decoder_channels=(64, 32))
