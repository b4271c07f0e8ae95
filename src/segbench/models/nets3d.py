"""3D networks of the whole-CT scenario: TotalSegmentator's nnU-Net and STU-Net S/B/L/H.

The TotalSegmentator networks are nnU-Net's ``PlainConvUNet`` from dynamic-network-architectures,
configured exactly as TotalSegmentator's plans configure them, so the timed graph is the one the
tool runs. STU-Net has no package; it is written here from the paper (Huang et al. 2023,
arXiv:2304.06716) as a residual nnU-Net whose width and depth scale together. Its parameter
counts are pinned by tests to the paper's, which is what fixes the details the paper leaves open.

Every constructor only creates modules and initialises weights with ops that are no-ops on the
``meta`` device, so STU-Net-L and -H (0.44 B and 1.46 B parameters) can be built under
``with torch.device("meta"):`` to count their memory without allocating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn
from torch.nn import functional as F

from segbench.catalogue import (  # noqa: F401  (read here by the tools and the tests)
    DEFAULT_PATCH,
    PLAIN_UNETS,
    STUNET_PATCH,
    STUNET_SPACING_MM,
    TIMED_PART,
    TOTALSEG_CLASSES,
    TOTALSEG_FAST_OUTPUTS,
    TOTALSEG_PARTS,
    PlainUNetConfig,
)

LEAKY_SLOPE = 1e-2  # nnU-Net's LeakyReLU slope, also the gain its He initialisation assumes
NORM_EPS = 1e-5


def he_init(module: nn.Module) -> None:
    """nnU-Net's weight initialisation (He normal for a LeakyReLU, zero bias).

    Trained nnU-Net weights have activations of a sane scale; torch's default init shrinks them
    layer after layer. Timing does not care, but fidelity of reduced precisions does, so the
    random weights start the way nnU-Net's training starts. ``normal_`` and ``zero_`` are
    no-ops on the meta device.
    """
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=LEAKY_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# TotalSegmentator: nnU-Net PlainConvUNet


# The plans (features, strides, patch, spacing) of TotalSegmentator's networks and STU-Net's
# live in the catalogue of whole-CT methods, with the tools' inference settings.


def true_outputs(name: str) -> tuple[int, ...]:
    """Output counts of the networks TotalSegmentator really ships with this architecture
    (one per network, in the order the tool runs them); empty for networks it does not ship."""
    if name == "totalseg-3mm":
        return (TOTALSEG_FAST_OUTPUTS,)
    if name == "totalseg-1.5mm":
        return tuple(outputs for _, outputs in TOTALSEG_PARTS.values())
    return ()


def plain_unet_display(name: str, classes: int) -> str:
    """What a table calls this network with this many outputs: the TotalSegmentator network it
    is, or, when the tool has no such network, a name that says so."""
    if name == "totalseg-3mm" and classes == TOTALSEG_FAST_OUTPUTS:
        return f"TotalSegmentator --fast 3 mm (nnU-Net, {classes} outputs)"
    if name == "totalseg-1.5mm":
        parts = [part for part, (_, n) in TOTALSEG_PARTS.items() if n == classes]
        if parts:
            return (f"TotalSegmentator 1.5 mm part network ({' or '.join(parts)}, "
                    f"{classes} outputs)")
        if classes == TOTALSEG_CLASSES:
            return f"Single 1.5 mm nnU-Net (hypothetical, {classes} outputs)"
    return f"{PLAIN_UNETS[name].display} ({classes} outputs)"


def build_plain_unet(config: PlainUNetConfig, classes: int) -> PlainConvUNet:
    """The PlainConvUNet of an nnU-Net 3d_fullres plan, with deep supervision off.

    ``conv_bias=True`` is what nnU-Net v2 plans write; with it the --fast network with 118
    outputs has 16,603,736 parameters, and the 1.5 mm architecture with 117 outputs (a
    hypothetical single network) the 31,288,169 the original documents quoted.
    """
    net = PlainConvUNet(
        input_channels=1,
        n_stages=config.stages,
        features_per_stage=list(config.features),
        conv_op=nn.Conv3d,
        kernel_sizes=[[3, 3, 3]] * config.stages,
        strides=[[s, s, s] for s in config.strides],
        n_conv_per_stage=[2] * config.stages,
        num_classes=classes,
        n_conv_per_stage_decoder=[2] * (config.stages - 1),
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": NORM_EPS, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    net.apply(he_init)
    return net


# --------------------------------------------------------------------------------------------
# STU-Net


def conv3d(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv3d:
    """A same-padded 3D convolution with bias, as in STU-Net (bias is part of its param count)."""
    return nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=True)


def instance_norm(channels: int) -> nn.InstanceNorm3d:
    return nn.InstanceNorm3d(channels, eps=NORM_EPS, affine=True)


class ResidualBlock(nn.Module):
    """conv3 -> IN -> LeakyReLU -> conv3 -> IN, plus shortcut, then LeakyReLU.

    The first block of every stage carries a 1x1x1 projection shortcut with the stage's stride:
    every such block changes the width, the resolution or both. The bottleneck keeps the width
    of the stage above it (16 x base) but halves the resolution (stride 2, 8^3 -> 4^3 on a
    128^3 patch), so it projects too.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, project: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3d(in_ch, out_ch, 3, stride)
        self.norm1 = instance_norm(out_ch)
        self.act1 = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.conv2 = conv3d(out_ch, out_ch, 3)
        self.norm2 = instance_norm(out_ch)
        self.shortcut = conv3d(in_ch, out_ch, 1, stride) if project else nn.Identity()
        self.act2 = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


def residual_stage(in_ch: int, out_ch: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One resolution level: a projecting block (which may downsample), then identity blocks."""
    layers = [ResidualBlock(in_ch, out_ch, stride, project=True)]
    layers += [ResidualBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class NearestUpsample(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 1x1x1 conv to the skip's width.

    STU-Net replaces nnU-Net's transposed convolution by this pair so that the weights do not
    depend on the stride and transfer between tasks. Upsampling before the 1x1x1 conv is the
    order of the paper's code; it costs 8x the conv FLOPs of the other order (the two orders
    give the same result), which is what a faithful timing must pay.
    """

    def __init__(self, in_ch: int, out_ch: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = conv3d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


@dataclass(frozen=True)
class STUNetConfig:
    base: int  # channels of the first stage; stages have base x (1, 2, 4, 8, 16, 16)
    blocks: int  # residual blocks per stage, the same in encoder and decoder
    display: str
    paper_params: str  # as the paper's table quotes it (105 classes)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.base * m for m in (1, 2, 4, 8, 16, 16))


STUNETS: dict[str, STUNetConfig] = {
    "stunet-s": STUNetConfig(base=16, blocks=1, display="STU-Net-S", paper_params="14.60M"),
    "stunet-b": STUNetConfig(base=32, blocks=1, display="STU-Net-B", paper_params="58.26M"),
    "stunet-l": STUNetConfig(base=64, blocks=2, display="STU-Net-L", paper_params="440.30M"),
    "stunet-h": STUNetConfig(base=96, blocks=3, display="STU-Net-H", paper_params="1457.33M"),
}


class STUNet(nn.Module):
    """Residual U-Net: 6 stages (first at stride 1, then 2), nearest upsampling, concat skips.

    Every decoder stage has a 1x1x1 segmentation head for deep supervision, as the trained
    checkpoints do; at inference only the full-resolution head runs, so the others are
    parameters that cost memory but no time.
    """

    def __init__(self, config: STUNetConfig, classes: int, in_channels: int = 1) -> None:
        super().__init__()
        ch = config.channels
        self.encoder = nn.ModuleList(
            residual_stage(in_channels if i == 0 else ch[i - 1], ch[i], config.blocks,
                           stride=1 if i == 0 else 2)
            for i in range(len(ch)))
        # decoder stages run from the bottleneck up; stage j lands on encoder level len-2-j
        levels = list(range(len(ch) - 2, -1, -1))
        self.upsample = nn.ModuleList(NearestUpsample(ch[lv + 1], ch[lv]) for lv in levels)
        self.decoder = nn.ModuleList(
            residual_stage(2 * ch[lv], ch[lv], config.blocks) for lv in levels)
        self.heads = nn.ModuleList(conv3d(ch[lv], classes, 1) for lv in levels)
        self.apply(he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder[:-1]:
            x = stage(x)
            skips.append(x)
        x = self.encoder[-1](x)
        for up, stage, skip in zip(self.upsample, self.decoder, reversed(skips)):
            x = stage(torch.cat((up(x), skip), dim=1))
        return self.heads[-1](x)


# --------------------------------------------------------------------------------------------
# The family


class Nets3DFamily:
    """Family "3d": inputs (N, 1, D, H, W), outputs (N, classes, D, H, W) at full resolution.

    ``size_multiple`` is 32 because every network but the 3 mm one pools 5 times; the 3 mm
    network pools 4 times and needs only multiples of 16 (its own patch, 112, is one), which
    ``describe`` reports per network.
    """

    dims = 3
    size_multiple = 32

    def names(self) -> list[str]:
        return [*PLAIN_UNETS, *STUNETS]

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        _no_options(name, options)
        if name in PLAIN_UNETS:
            return build_plain_unet(PLAIN_UNETS[name], classes)
        if name in STUNETS:
            return STUNet(STUNETS[name], classes)
        raise KeyError(f"unknown 3D network {name!r}; valid: {', '.join(self.names())}")

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        _no_options(name, options)
        if name in PLAIN_UNETS:
            cfg = PLAIN_UNETS[name]
            return {"display": plain_unet_display(name, classes), "patch": list(cfg.patch),
                    "spacing_mm": cfg.spacing_mm, "architecture": "PlainConvUNet",
                    "features": list(cfg.features), "tool_outputs": list(true_outputs(name)),
                    "size_multiple": 2 ** (cfg.stages - 1)}
        if name in STUNETS:
            cfg = STUNETS[name]
            return {"display": cfg.display, "patch": list(STUNET_PATCH),
                    "spacing_mm": STUNET_SPACING_MM, "architecture": "STU-Net",
                    "features": list(cfg.channels), "blocks_per_stage": cfg.blocks,
                    "paper_params": cfg.paper_params, "size_multiple": 32}
        raise KeyError(f"unknown 3D network {name!r}; valid: {', '.join(self.names())}")


def _no_options(name: str, options: dict[str, Any]) -> None:
    """The 3D networks are fixed configurations; a stray option is a mistake, not a knob."""
    if options:
        raise TypeError(f"3D network {name!r} takes no options, got {', '.join(options)}")


FAMILIES = {"3d": Nets3DFamily()}
