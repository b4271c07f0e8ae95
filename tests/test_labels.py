"""Output paths: logits -> uint8 label maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segbench.labels import (
    PATHS,
    LabelNet,
    blocked_labels,
    corner_labels,
    full_labels,
    labels_from_logits,
    lowres_logits,
)
from segbench.models import ModelSpec, build_model, make_input


class TinyStride4(nn.Module):
    """A Seg2D-shaped miniature: stride-4 encoder, decoder, head, x4 bilinear upsample."""

    def __init__(self, classes: int = 9) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3, stride=2, padding=1))
        self.decoder = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.decoder.output_stride = 4
        self.head = nn.Conv2d(8, classes, 1)
        self.upsample = nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.head(self.decoder(self.encoder(x))))


def _agree_up_to_ties(a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor) -> None:
    """Labels equal, except where both labels' scores tie (within float rounding)."""
    differ = a != b
    if differ.any():
        sa = scores.gather(1, a.long()[:, None])[:, 0]
        sb = scores.gather(1, b.long()[:, None])[:, 0]
        assert torch.allclose(sa[differ], sb[differ], atol=1e-5)


@pytest.mark.parametrize("block_rows", [1, 3, 4, 16])
def test_blocked_equals_full_on_random_net(block_rows):
    net = TinyStride4().eval()
    x = make_input((2, 3, 40, 56))
    with torch.no_grad():
        full = LabelNet(net, "full")(x)
        blocked = LabelNet(net, "blocked", block_rows=block_rows)(x)
        scores = net(x)
    assert full.dtype == torch.uint8 and full.shape == (2, 40, 56)
    assert torch.equal(full, scores.argmax(1).to(torch.uint8))
    _agree_up_to_ties(full, blocked, scores)


def test_blocked_is_bitwise_the_full_upsample():
    """The halo rows make every kept block value exactly the full upsample's value."""
    logits = torch.randn(1, 5, 13, 7)
    full = F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
    for rows in (1, 2, 5, 13, 20):
        assert torch.equal(blocked_labels(logits, 4, rows), full.argmax(1).to(torch.uint8))


def test_lowres_differs_only_near_boundaries():
    net = TinyStride4().eval()
    x = make_input((1, 3, 64, 64))
    with torch.no_grad():
        full = LabelNet(net, "full")(x)
        low = LabelNet(net, "lowres")(x)
        coarse = lowres_logits(net, x).argmax(1)
    assert low.dtype == torch.uint8 and low.shape == full.shape
    # the nearest upsample of the low-resolution argmax
    assert torch.equal(low, F.interpolate(coarse[:, None].float(), scale_factor=4.0,
                                          mode="nearest")[:, 0].to(torch.uint8))
    # a pixel may differ only if its low-resolution 3x3 neighbourhood holds a boundary
    c = coarse[:, None].float()
    pad = F.pad(c, (1, 1, 1, 1), mode="replicate")
    uniform = (F.max_pool2d(pad, 3, stride=1) == -F.max_pool2d(-pad, 3, stride=1))[:, 0]
    uniform_full = uniform.repeat_interleave(4, 1).repeat_interleave(4, 2)
    assert not (low != full)[uniform_full].any()
    assert (low == full).float().mean() > 0.5


def test_corners_equal_full_where_the_corners_agree():
    torch.manual_seed(5)
    logits = F.avg_pool2d(torch.randn(2, 12, 28, 28) * 5, 5, 1, 2)[:, :, :24, :20]
    full = full_labels(logits, 4)
    coarse = F.pad(logits.argmax(1, keepdim=True).float(), (1, 1, 1, 1), mode="replicate")
    uniform = (F.max_pool2d(coarse, 3, stride=1) == -F.max_pool2d(-coarse, 3, stride=1))[:, 0]
    uniform_full = uniform.repeat_interleave(4, 1).repeat_interleave(4, 2)
    for top in (1, 2):
        corners = corner_labels(logits, 4, top)
        assert corners.dtype == torch.uint8 and corners.shape == full.shape
        assert torch.equal(corners[uniform_full], full[uniform_full])
    # with two candidates per corner, misses are rare even on these near-tied random logits
    assert (corner_labels(logits, 4, 2) == full).float().mean() > 0.99


def test_corners_with_every_class_a_candidate_is_the_full_argmax():
    logits = torch.randn(1, 3, 9, 7)
    up = F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
    _agree_up_to_ties(corner_labels(logits, 4, top=3), full_labels(logits, 4), up)


def test_labels_from_logits_matches_the_modules():
    net = TinyStride4().eval()
    x = make_input((2, 3, 32, 48))
    with torch.no_grad():
        logits = lowres_logits(net, x)
        for path in PATHS:
            want = LabelNet(net, path, block_rows=2)(x)
            got = labels_from_logits(logits, path, (32, 48), block_rows=2)
            assert torch.equal(got, want), path
            # a single (C, h, w) numpy array works too
            one = labels_from_logits(logits[1].numpy(), path, (32, 48), block_rows=2)
            assert one.shape == (32, 48) and torch.equal(one, want[1])


def test_bad_arguments():
    net = TinyStride4()
    with pytest.raises(ValueError, match="output path"):
        LabelNet(net, "nope")
    with pytest.raises(ValueError, match="block_rows"):
        LabelNet(net, "blocked", block_rows=0)
    with pytest.raises(ValueError, match="multiple"):
        labels_from_logits(torch.zeros(1, 3, 8, 8), "full", (30, 30))
    with pytest.raises(ValueError, match="Seg2D"):
        LabelNet(nn.Conv2d(3, 3, 1))


def test_real_fpn_paths():
    net = build_model(ModelSpec("fpn", "mobilenetv4_conv_small", classes=11,
                                options={"pyramid_channels": 32}))
    x = make_input((1, 3, 64, 64))
    with torch.no_grad():
        scores = net(x)
        full = LabelNet(net, "full")(x)
        blocked = LabelNet(net, "blocked", block_rows=2)(x)
    assert torch.equal(full, scores.argmax(1).to(torch.uint8))
    _agree_up_to_ties(full, blocked, scores)


def test_labelnet_exports_to_onnx_and_compiles(tmp_path):
    from segbench import runtimes

    net = TinyStride4().eval()
    x = make_input((1, 3, 32, 32))
    with torch.no_grad():
        want = {p: LabelNet(net, p, block_rows=3)(x) for p in PATHS}
    for name in ("ort-fp32", "compile"):
        rt = runtimes.get(name)
        for path in PATHS:
            prepared = rt.prepare(LabelNet(net, path, block_rows=3).eval(), x, threads=1)
            try:
                got = torch.as_tensor(runtimes.to_numpy(prepared.call(x)))
            finally:
                if prepared.cleanup:
                    prepared.cleanup()
            assert got.shape == (1, 32, 32)
            assert (got.to(torch.uint8) == want[path]).float().mean() > 0.99, (name, path)
