"""The 3D networks have the published parameter counts and map (N,1,D,H,W) to (N,C,D,H,W).

Counts are taken on the meta device: STU-Net-H would need 5.8 GB of real weights.
"""

import pytest
import torch

from segbench.footprint import count_params
from segbench.models import ModelSpec, describe_model, family
from segbench.models.nets3d import FAMILIES

NETS = FAMILIES["3d"]


def meta_params(name: str, classes: int) -> int:
    with torch.device("meta"):
        return count_params(NETS.build(name, classes))


@pytest.mark.parametrize("name, classes, params", [
    # the original documents' figure: a hypothetical single 1.5 mm network with 117 outputs
    ("totalseg-1.5mm", 117, 31_288_169),
    # TotalSegmentator --fast (Dataset297): 117 classes + background
    ("totalseg-3mm", 118, 16_603_736),
    # the five 1.5 mm part networks differ only in their heads (outputs incl. background)
    ("totalseg-1.5mm", 25, 31_214_109),
    ("totalseg-1.5mm", 27, 31_215_719),
    ("totalseg-1.5mm", 19, 31_209_279),
    ("totalseg-1.5mm", 24, 31_213_304),
    # STU-Net paper, Table 1 (105 classes of TotalSegmentator v1 + background)
    ("stunet-s", 105, 14_596_941),
    ("stunet-b", 105, 58_262_669),
    ("stunet-l", 105, 440_302_605),
    ("stunet-h", 105, 1_457_326_221),
])
def test_parameter_counts(name, classes, params):
    assert meta_params(name, classes) == params


def test_stunet_s_count_on_real_tensors_matches_meta():
    assert count_params(NETS.build("stunet-s", 105)) == 14_596_941


def test_registry_reaches_the_family():
    assert family("3d") is NETS
    assert NETS.names() == ["totalseg-1.5mm", "totalseg-3mm", "stunet-s", "stunet-b",
                            "stunet-l", "stunet-h"]


@pytest.mark.parametrize("name", NETS.names())
def test_describe_gives_patch_and_spacing(name):
    info = describe_model(ModelSpec("3d", name, classes=4))
    assert {"display", "patch", "spacing_mm"} <= set(info)
    assert len(info["patch"]) == 3
    assert all(p % info["size_multiple"] == 0 for p in info["patch"])


def test_true_output_counts_come_from_the_class_map():
    from segbench.models import nets3d

    # 117 foreground classes split over five parts without overlap
    assert sum(n - 1 for _, n in nets3d.TOTALSEG_PARTS.values()) == nets3d.TOTALSEG_CLASSES
    assert nets3d.true_outputs("totalseg-1.5mm") == (25, 27, 19, 24, 27)
    assert nets3d.true_outputs("totalseg-3mm") == (118,)
    assert nets3d.true_outputs("stunet-s") == ()
    assert 117 not in nets3d.true_outputs("totalseg-1.5mm")


@pytest.mark.parametrize("name, classes, display", [
    ("totalseg-3mm", 118, "TotalSegmentator --fast 3 mm (nnU-Net, 118 outputs)"),
    ("totalseg-1.5mm", 117, "Single 1.5 mm nnU-Net (hypothetical, 117 outputs)"),
    ("totalseg-1.5mm", 25, "TotalSegmentator 1.5 mm part network (organs, 25 outputs)"),
    ("totalseg-1.5mm", 27, "TotalSegmentator 1.5 mm part network (vertebrae or ribs, 27 outputs)"),
    ("totalseg-3mm", 4, "3 mm nnU-Net (4 outputs)"),
])
def test_display_names_say_which_network_it_is(name, classes, display):
    assert NETS.describe(name, classes)["display"] == display


def test_fast_network_uses_the_plans_patch():
    assert NETS.describe("totalseg-3mm", 118)["patch"] == [112, 112, 128]
    assert NETS.describe("totalseg-3mm", 118)["spacing_mm"] == 3.0


def test_unknown_name_and_options_are_refused():
    with pytest.raises(KeyError, match="stunet-s"):
        NETS.build("stunet-xl", 2)
    with pytest.raises(TypeError, match="no options"):
        NETS.build("stunet-s", 2, width=3)


# 6-stage networks pool 5 times; InstanceNorm needs more than one voxel in the bottleneck,
# so the smallest cheap input is 32x32x64 (bottleneck 1x1x2)
@pytest.mark.parametrize("name, shape", [
    ("stunet-s", (1, 1, 32, 32, 64)),
    ("totalseg-1.5mm", (1, 1, 32, 32, 64)),
    ("totalseg-3mm", (1, 1, 32, 32, 32)),
])
def test_tiny_forward_gives_full_resolution_logits(name, shape):
    torch.manual_seed(0)
    model = NETS.build(name, 3).eval()
    with torch.inference_mode():
        out = model(torch.randn(shape))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (shape[0], 3, *shape[2:])
    assert torch.isfinite(out).all()


def test_stunet_h_runs_on_meta_without_allocating():
    with torch.device("meta"):
        model = NETS.build("stunet-h", 105).eval()
        x = torch.empty(1, 1, 64, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.device.type == "meta"
    assert out.shape == (1, 105, 64, 64, 64)
