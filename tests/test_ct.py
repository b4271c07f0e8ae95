"""Whole-CT arithmetic on fake records: passes x measured seconds, memory, the loop check."""

import pytest

from segbench import ct, volume
from segbench.models import ModelSpec
from segbench.results import Record

PRESET = volume.PRESETS["ct-512x512x280"]


def record(spec: ModelSpec, spatial, seconds: float, loop=False, **extra) -> Record:
    channels = 1 if spec.family == "3d" else 3
    return Record(benchmark="2d_vs_3d", key=f"{spec.family}|{spec.name}|{spec.classes}|eager",
                  model=spec.label, runtime="eager", shape=[1, channels, *spatial], batch=1,
                  threads=2, classes=spec.classes, family=spec.family, name=spec.name,
                  timing={"throughput": 1 / seconds}, memory={"forward_peak_bytes": 2**30},
                  extra={"loop": loop, **extra})


def test_totalsegmentator_networks_have_their_class_map_outputs():
    total = next(m for m in volume.METHODS_3D if m.networks == 5)
    assert ct.network_outputs(total, 117) == (25, 27, 19, 24, 27)
    assert ct.classes_per_network(total, 117) == 25  # the organs part is timed
    fast = next(m for m in volume.METHODS_3D if m.network == "totalseg-3mm")
    assert ct.classes_per_network(fast, 117) == 118  # 117 classes + background
    defaults = next(m for m in volume.METHODS_3D if m.mirror)
    assert ct.classes_per_network(defaults, 117) == 117  # a hypothetical single network


def test_nnunet_defaults_whole_ct_memory_uses_float16_accumulators():
    """280x266x266 grid, 117 logits + 1 weight channel, 2 bytes: about 4.4 GiB on top of a
    1.7 GiB forward peak, about 6.1 GiB in all (float32 accumulators made it 10.5)."""
    defaults = next(m for m in volume.METHODS_3D if m.mirror)
    r = record(ModelSpec("3d", "totalseg-1.5mm", 117), defaults.patch, 1.0)
    r.memory["forward_peak_bytes"] = int(1.7 * 2**30)
    memory = ct.whole_ct_memory(defaults, PRESET, r, 117)
    assert memory == int(1.7 * 2**30) + 280 * 266 * 266 * 118 * 2
    assert 6.0 < memory / 2**30 < 6.2


def test_seconds_per_ct_is_passes_times_measured_seconds():
    slice_wise = volume.slice_wise("mobilenetv4_conv_small+fpn")
    fast = next(m for m in volume.METHODS_3D if m.network == "totalseg-3mm")
    two_d = ModelSpec("fpn", "mobilenetv4_conv_small", 117)
    records = [record(two_d, (512, 512), 0.05),
               record(ModelSpec("3d", "totalseg-3mm", 118), fast.patch, 2.0)]
    rows = {r["method"]: r for r in ct.ct_rows([slice_wise, fast], PRESET, 117, records, "eager")}
    assert rows[slice_wise.name]["passes"] == 280
    assert rows[slice_wise.name]["seconds_per_ct"] == pytest.approx(280 * 0.05)
    assert rows[fast.name]["passes"] == 8 and rows[fast.name]["seconds_per_ct"] == pytest.approx(16)
    # 3D adds float16 accumulators over the padded 3 mm grid (140x133x133, patch 112x112x128):
    # 118 logits + 1 weight channel
    assert rows[fast.name]["memory"] == 2**30 + 140 * 133 * 133 * 119 * 2
    assert "step 0.8" in rows[fast.name]["assumptions"]


def test_missing_measurement_is_a_row_not_a_crash():
    rows = ct.ct_rows([volume.METHODS_3D[0]], PRESET, 117, [], "eager")
    assert rows[0]["seconds_per_ct"] is None and rows[0]["status"] == "not measured"


def test_loop_check_ratio():
    spec = ModelSpec("3d", "totalseg-3mm", 117)
    patch = (112, 112, 128)
    records = [record(spec, patch, 2.0),
               record(spec, patch, 18.0, loop=True, passes=8, volume=[1, 140, 133, 133])]
    check = ct.loop_check(records, "eager")[0]
    assert check["predicted"] == pytest.approx(16.0) and check["ratio"] == pytest.approx(18 / 16)
