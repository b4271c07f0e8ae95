"""One home for the facts about whole-CT methods: the 3D networks' plans, the tools' inference
settings and the whole_ct benchmark's methods, with no array library.

Everything that describes a 3D method reads it here: :mod:`segbench.models.nets3d` builds the
networks from :data:`PLAIN_UNETS` and the STU-Net plan, :mod:`segbench.volume` counts the passes
of :data:`METHODS_3D`, :mod:`segbench.benchmarks.whole_ct.plan` runs :data:`METHODS` and the
2d_vs_3d benchmark times :func:`networks_3d`. Adding a 3D method is one entry here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from segbench import runtimes, tiling

# --------------------------------------------------------------------------------------------
# The networks' plans


@dataclass(frozen=True)
class PlainUNetConfig:
    """The ``arch_kwargs`` of an nnU-Net plans file that decide the graph and the param count."""

    features: tuple[int, ...]
    strides: tuple[int, ...]  # isotropic stride entering each stage; 1 for the first
    patch: tuple[int, int, int]  # (z, y, x) patch of the plans
    spacing_mm: float
    display: str

    @property
    def stages(self) -> int:
        return len(self.features)


# TotalSegmentator's `total` task (v2 class map, totalsegmentator/map_to_binary.py): 117
# foreground classes. --fast (Dataset297, 3 mm) and --fastest (Dataset298, 6 mm) are single
# networks with one output per class plus background; the default 1.5 mm run uses five part
# networks (Datasets 291-295), each with its own subset of the classes plus background.
TOTALSEG_CLASSES = 117
TOTALSEG_FAST_OUTPUTS = TOTALSEG_CLASSES + 1
TOTALSEG_PARTS: dict[str, tuple[int, int]] = {  # part -> (dataset id, outputs incl. background)
    "organs": (291, 25),
    "vertebrae": (292, 27),
    "cardiac": (293, 19),
    "muscles": (294, 24),
    "ribs": (295, 27),
}
TIMED_PART = "organs"  # the part a whole-CT estimate times (the first the tool runs)

PLAIN_UNETS: dict[str, PlainUNetConfig] = {
    # The architecture of TotalSegmentator v2's five 1.5 mm part networks: nnU-Net plans a
    # 128^3 patch at 1.5 mm, which pools 5 times down to a 4^3 bottleneck. With 117 outputs it
    # is no network the tool ships: the originals' single 1.5 mm network is hypothetical.
    "totalseg-1.5mm": PlainUNetConfig(
        features=(32, 64, 128, 256, 320, 320), strides=(1, 2, 2, 2, 2, 2),
        patch=(128, 128, 128), spacing_mm=1.5, display="1.5 mm nnU-Net"),
    # The --fast network (Dataset297, 3 mm, 118 outputs). Its plans' patch is 112x112x128;
    # nnU-Net's get_pool_and_conv_props pools every axis 4 times (to 7x7x8) and then stops,
    # because a fifth pool would be along one axis only and that axis (8) is below 3 * 4 voxels.
    # Hence 5 stages and a network of 16.6 M parameters, about half the 1.5 mm one.
    "totalseg-3mm": PlainUNetConfig(
        features=(32, 64, 128, 256, 320), strides=(1, 2, 2, 2, 2),
        patch=(112, 112, 128), spacing_mm=3.0, display="3 mm nnU-Net"),
}
DEFAULT_PATCH = (128, 128, 128)
STUNET_PATCH = DEFAULT_PATCH
STUNET_SPACING_MM = 1.5  # trained on TotalSegmentator at 1.5 mm isotropic, 128^3 patches

# The tools' inference settings (the networks' plans above fix patch and spacing)
TOTALSEG_STEP = 0.8  # TotalSegmentator's tile step for every total* task (v2.16.0 on)
NNUNET_STEP = 0.5  # nnU-Net's predictor default, also STU-Net's


def plan_of(network: str) -> tuple[float, tuple[int, ...]]:
    """(spacing in mm, patch) a 3D network was planned with."""
    if network in PLAIN_UNETS:
        return PLAIN_UNETS[network].spacing_mm, PLAIN_UNETS[network].patch
    if network.startswith("stunet-"):
        return STUNET_SPACING_MM, STUNET_PATCH
    raise KeyError(f"no plan for 3D network {network!r}")


def network_stride(network: str) -> int:
    """How much a plain U-Net's encoder downsamples in all: every input axis must be a
    multiple of it."""
    return math.prod(PLAIN_UNETS[network].strides)


def whole_grid_patch(grid: Sequence[int], network: str) -> tuple[int, int, int]:
    """A patch covering the whole grid in one tile: each axis rounded up to a multiple of the
    network's stride (the padding is the sliding window's own)."""
    m = network_stride(network)
    return tuple(-(-int(n) // m) * m for n in grid)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# The 3D methods


@dataclass(frozen=True)
class Method3D:
    """How a tool segments a whole CT with 3D networks: which network at its plan's spacing
    and patch, the tile step, mirroring, and how many part networks run one after another."""

    name: str  # what the per-CT estimates call it
    network: str  # a "3d" family network
    step: float  # tile step as a fraction of the patch (nnU-Net's tile_step_size)
    # part networks run one after another on every CT (TotalSegmentator: 5); "parts" means
    # only this in the code (a model's submodules timed alone are Cell/Record.submodules)
    parts: int = 1
    mirror: bool = False  # test-time mirroring over every combination of axes

    @property
    def spacing_mm(self) -> float:
        return plan_of(self.network)[0]

    @property
    def patch(self) -> tuple[int, ...]:
        return plan_of(self.network)[1]


TOTALSEG = Method3D("TotalSegmentator", "totalseg-1.5mm", TOTALSEG_STEP, len(TOTALSEG_PARTS))
TOTALSEG_FAST = Method3D("TotalSegmentator --fast", "totalseg-3mm", TOTALSEG_STEP)
NNUNET_DEFAULTS_3D = Method3D("nnU-Net defaults", "totalseg-1.5mm", NNUNET_STEP, mirror=True)
STUNET_S = Method3D("STU-Net-S", "stunet-s", NNUNET_STEP)
STUNET_B = Method3D("STU-Net-B", "stunet-b", NNUNET_STEP)
# five 1.5 mm "part" networks (TotalSegmentator runs nnU-Net's predictor with step 0.8 and
# mirroring off to stay fast), the --fast network, what nnU-Net's predictor does by default
# (half-patch steps, 8-fold mirroring), and STU-Net
METHODS_3D: tuple[Method3D, ...] = (TOTALSEG, TOTALSEG_FAST, NNUNET_DEFAULTS_3D, STUNET_S,
                                    STUNET_B)


def networks_3d() -> list[str]:
    """The 3D networks of the methods, in order, each once."""
    return list(dict.fromkeys(m.network for m in METHODS_3D))


# --------------------------------------------------------------------------------------------
# Pipelines: a network and everything around it


@dataclass(frozen=True)
class Pipeline:
    """One way to segment a whole CT: a network and everything around it.

    ``kind`` "2d": slice-wise, ``batch`` slices per call, ``path`` the label path (only
    "full" runs here: the network's own upsample, then argmax). ``kind`` "3d": sliding window
    at ``spacing_mm`` with ``patch`` / ``step`` / ``mirror``, ``accumulate`` dtype, and ``back``
    ("nearest" or "probabilities"); for 3D ``batch`` is the tiles per network call, ``streams``
    the network calls kept in flight (the runtime must be prepared for as many: OpenVINO's
    ``streams`` option), ``memory`` "full" (accumulators over the whole grid, then argmax) or
    "slabs" (labels slab by slab: :func:`segbench.sliding.sliding_window_labels`; same labels,
    less memory; only with ``back`` "nearest").

    A 2D pipeline around a user's own network (an ONNX file) carries that network's input:
    ``windows`` (centre, width) in HU, one per input channel, each clipped and scaled to [0, 1]
    (None: the project's display windows, ``data.phantom.to_input``); ``size`` (y, x) the
    slices are resized to, bilinearly, with the logits resized back to the CT's plane before
    the argmax (None: the CT's own plane, padded to the 2D networks' multiple). Both are left
    out of :meth:`to_dict` when None, so the project's own pipelines keep their keys.
    """

    kind: str
    network: str  # a model label: "totalseg-3mm", "mobilenetv4_conv_small+fpn", ...
    classes: int
    batch: int = 1
    path: str = "full"
    spacing_mm: float | None = None
    patch: tuple[int, ...] | None = None
    step: float = 0.5
    mirror: bool = False
    accumulate: str = "float16"
    back: str = "nearest"
    windows: tuple[tuple[float, float], ...] | None = None  # 2D: (centre, width) per channel
    size: tuple[int, int] | None = None  # 2D: (y, x) the slices are resized to
    streams: int = 1  # 3D: network calls in flight
    memory: str = "full"  # 3D: "full" or "slabs"

    def __post_init__(self) -> None:
        if self.memory not in ("full", "slabs"):
            raise ValueError(f"memory must be 'full' or 'slabs', got {self.memory!r}")
        if self.memory == "slabs" and self.back != "nearest":
            raise ValueError("labels per slab need back='nearest' (the argmax comes first)")
        if self.batch < 1 or self.streams < 1:
            raise ValueError(f"batch and streams must be >= 1, got {self.batch}, {self.streams}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patch"] = list(self.patch) if self.patch else None
        for name, default in (("streams", 1), ("memory", "full")):  # absent when default
            if data[name] == default:
                del data[name]
        for name in ("windows", "size"):  # absent unless set: existing keys stay as they were
            value = data.pop(name)
            if value is not None:
                data[name] = [list(v) for v in value] if name == "windows" else list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pipeline":
        data = dict(data)
        if data.get("patch"):
            data["patch"] = tuple(data["patch"])
        if data.get("windows"):
            data["windows"] = tuple(tuple(float(v) for v in w) for w in data["windows"])
        if data.get("size"):
            data["size"] = tuple(int(v) for v in data["size"])
        return cls(**data)

    @classmethod
    def of_method(cls, method: Method3D, classes: int, back: str = "nearest") -> "Pipeline":
        """The sliding-window pipeline of a 3D method (one of its part networks)."""
        return cls("3d", method.network, classes, spacing_mm=method.spacing_mm,
                   patch=method.patch, step=method.step, mirror=method.mirror, back=back)

    @property
    def input_channels(self) -> int:
        if self.windows:
            return len(self.windows)
        return 3 if self.kind == "2d" else 1

    def grid(self, ct_shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, ...]:
        """The grid the network sees: the CT's own for 2D, resampled for 3D."""
        if self.kind == "2d":
            return tuple(ct_shape)
        assert self.spacing_mm is not None
        return tiling.target_shape(ct_shape, spacing, self.spacing_mm)

    def passes(self, ct_shape: Sequence[int], spacing: Sequence[float]) -> int:
        """Network calls one CT costs: batches of slices, or tiles x mirrored copies."""
        if self.kind == "2d":
            return math.ceil(ct_shape[0] / self.batch)
        assert self.patch is not None
        grid = self.grid(ct_shape, spacing)
        tiles = tiling.tile_count(grid, self.patch, self.step)
        return math.ceil(tiles / self.batch) * len(tiling.mirror_axes(3, self.mirror))


def with_defaults(pipe: Pipeline, method: Method3D = NNUNET_DEFAULTS_3D) -> Pipeline:
    """``pipe`` with ``method``'s step and mirroring (nnU-Net's defaults unless told)."""
    return replace(pipe, step=method.step, mirror=method.mirror)


# --------------------------------------------------------------------------------------------
# 2D pipeline networks (models.pipeline's ``fpn-labels``): the FPN width is part of the name

WIDTHS = (128, 96, 64)  # Semantic FPN pyramid channels: the original, and two narrower
DEFAULT_WIDTH = 128


def pipeline_name(encoder: str, width: int = DEFAULT_WIDTH) -> str:
    return encoder if width == DEFAULT_WIDTH else f"{encoder}-w{width}"


# --------------------------------------------------------------------------------------------
# The whole_ct benchmark's methods

CLASSES_2D = TOTALSEG_CLASSES  # the 2D networks' head: one output per TotalSegmentator class
BUDGET = "not run in the default matrix (45-minute budget on 2 cores); --runtimes runs it"


@dataclass(frozen=True)
class MethodSpec:
    key: str  # the --models name
    title: str  # what the table calls it
    family: str
    network: str
    pipeline: Pipeline
    runtimes: tuple[str, ...]  # default runtimes, most important first; the first is the
    # method's reference (its FP32 eager loop when eager is among them)
    quality: str  # "dice" (trained weights, phantom truth) or "agreement" (random weights)
    networks: int = 1  # networks run one after another; the loop runs one, counted this often
    long: bool = False  # a loop of minutes: warm-up = one network pass, one timed loop
    quick: bool = False  # part of --quick
    not_run: tuple[str, ...] = ()  # runtimes the default matrix leaves out (rows say why)
    note: str = ""
    stand_in: str = ""  # why this runs in place of the method it is named after (2d-best)


def slice_pipeline(network: str, batch: int, path: str) -> Pipeline:
    return Pipeline("2d", network, CLASSES_2D, batch=batch, path=path)


ORIGINAL_2D = "mobilenetv4_conv_small"  # + the project's Semantic FPN, 128 channels
# The 2D pipeline run as "2d-best" when this machine has no champion results (see
# champion_lookup): the original network under OpenVINO bf16 with in-graph argmax. It is NOT
# the champion, and its rows say so (title, "how" column, extra["stand_in"]).
BEST_2D = ("mobilenetv4_conv_small", "openvino-bf16", "blocked", 4)
CHAMPION_TITLE = "2D champion"
STAND_IN_TITLE = "2D stand-in, not the champion"
# TotalSegmentator --fast runs under every registered runtime but these three (the per-CT table
# lists them as not run: BUDGET), so a new runtime joins it by its registry line.
FAST_NOT_RUN = ("compile", "ort-int8", "compile-int8")
# The order is the committed runs' order (the FP32 eager reference first, so a run cut short
# keeps it); it is a choice, not an attribute of the runtimes, so it is stated: the registry's
# order (by toolchain) would put compile-bf16 first and OpenVINO bf16/INT8 after ORT.
FAST_RUN_ORDER = ("eager", "openvino-bf16", "compile-bf16", "openvino-int8", "ort-fp32",
                  "openvino-fp32")
FAST_RUNTIMES = runtimes.ordered(FAST_RUN_ORDER, leave_out=FAST_NOT_RUN)

# The 2D pipelines' upsample + argmax run inside the network's graph (family "fpn-labels"),
# where the runtime can fuse them, so their "network" stage includes it; the champion
# benchmark's breakdown splits the same pipeline into encoder/decoder/head/upsample+argmax.
IN_GRAPH = "upsample + argmax inside the network (its column)"

METHODS: list[MethodSpec] = [
    MethodSpec("2d-original", "2D original recipe (MobileNetV4-Conv-Small + FPN 128)",
               "fpn-labels", ORIGINAL_2D, slice_pipeline(ORIGINAL_2D, 1, "full"), ("ort-fp32",),
               "dice",
               quick=True, note="batch 1, path full; " + IN_GRAPH),
    MethodSpec("2d-best", f"{STAND_IN_TITLE} (MobileNetV4-Conv-Small + FPN 128)", "fpn-labels",
               BEST_2D[0], slice_pipeline(BEST_2D[0], BEST_2D[3], BEST_2D[2]), (BEST_2D[1],),
               "dice",
               note=f"batch {BEST_2D[3]}, path {BEST_2D[2]}; " + IN_GRAPH,
               stand_in="no champion results"),
    MethodSpec("totalseg-fast", "TotalSegmentator --fast (3 mm)", "3d-phantom", "totalseg-3mm",
               Pipeline.of_method(TOTALSEG_FAST, TOTALSEG_FAST_OUTPUTS), FAST_RUNTIMES, "dice",
               quick=True, not_run=FAST_NOT_RUN,
               note="labels back by nearest"),
    MethodSpec("totalseg-fast-probs", "TotalSegmentator --fast, probabilities resampled back",
               "3d-phantom", "totalseg-3mm",
               Pipeline.of_method(TOTALSEG_FAST, TOTALSEG_FAST_OUTPUTS, back="probabilities"),
               ("eager",), "dice", note="nnU-Net's way back: logits resampled, then argmax"),
    MethodSpec("totalseg-default", "TotalSegmentator default (5 part networks, 1.5 mm)", "3d",
               "totalseg-1.5mm",
               Pipeline.of_method(TOTALSEG, TOTALSEG_PARTS[TIMED_PART][1]),
               ("eager", "openvino-bf16"), "agreement", networks=TOTALSEG.parts, long=True,
               not_run=("compile-bf16", "ort-fp32", "openvino-int8"),
               note="organs part (25 outputs) run as a loop; the other four parts add its "
                    "per-network stages (the CT is resampled to 1.5 mm and back once)"),
    MethodSpec("stunet-s", "STU-Net-S (1.5 mm, step 0.5)", "3d", "stunet-s",
               Pipeline.of_method(STUNET_S, TOTALSEG_FAST_OUTPUTS), ("eager", "openvino-bf16"),
               "agreement", long=True, not_run=("compile-bf16", "ort-fp32", "openvino-int8")),
    MethodSpec("stunet-b", "STU-Net-B (1.5 mm, step 0.5)", "3d", "stunet-b",
               Pipeline.of_method(STUNET_B, TOTALSEG_FAST_OUTPUTS), ("openvino-bf16",), "agreement",
               long=True, not_run=("eager", "compile-bf16", "ort-fp32", "openvino-int8"),
               note="eager loop (~15 min) left out: no FP32 reference for agreement"),
]
ALL_RUNTIMES = list(dict.fromkeys(r for m in METHODS for r in m.runtimes))
# estimate: that network, nnU-Net's default step, mirroring
NNUNET_DEFAULTS = ("totalseg-default", NNUNET_DEFAULTS_3D.step, NNUNET_DEFAULTS_3D.mirror)

