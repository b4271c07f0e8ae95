"""Parameters, FLOPs and forward memory are counted exactly, also on the meta device."""

import torch
from torch import nn

from segbench.footprint import count_params, forward_memory, profile_forward


def test_params_and_flops_of_one_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_params(conv) == 8 * 3 * 9 + 8
    # 2 FLOPs per multiply-add, one per output element and kernel tap
    flops, _ = profile_forward(conv, torch.zeros(1, 3, 8, 8))
    assert flops == 2 * (8 * 8 * 8) * (3 * 9)


def _chain():
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.ReLU(inplace=True))


def test_activation_peak_counts_live_tensors_only():
    x = torch.zeros(1, 3, 10, 10)
    mem = forward_memory(_chain(), x)
    # conv1 out (1600 B) and relu out (1600 B) are alive together; conv1 out is then freed
    # before conv2 out (800 B); the in-place relu allocates nothing
    assert mem["activation_peak_bytes"] == 3200
    assert mem["weight_bytes"] == (4 * 3 + 4 + 2 * 4 + 2) * 4
    assert mem["forward_peak_bytes"] == 3200 + mem["weight_bytes"] + 1200


def test_meta_device_gives_the_same_footprint_without_allocating():
    with torch.device("meta"):
        model = _chain()
        x = torch.empty(1, 3, 10, 10)
    assert forward_memory(model, x) == forward_memory(_chain(), torch.zeros(1, 3, 10, 10))


def test_one_pass_profile_gives_flops_and_memory():
    model, x = _chain(), torch.zeros(1, 3, 10, 10)
    flops, memory = profile_forward(model, x)
    assert flops == 2 * 100 * (3 * 4 + 4 * 2)
    assert memory == forward_memory(model, x)
