"""The whole-CT pipeline a user's nnU-Net v2 model folder describes, with the network under any
runtime, and nnU-Net's own predictor as its reference.

Two ways to segment one CT with the folder's network (``NnunetPipeline.predictor``):

- **nnU-Net's predictor** (``predictor=True``): ``nnUNetPredictor.predict_single_npy_array``
  end to end, as nnU-Net ships it (its network in eager PyTorch; the ``call`` of the runtime is
  not used). Its FP32 labels are what every other row is compared with.
- **the project's loop** (``predictor=False``): nnU-Net's own preprocessing
  (``preprocessor_class.run_case_npy``: transpose, crop to the non-zero box, the plans'
  normalisation with its intensity properties, resampling to the plans' spacing), then the
  project's sliding window (:func:`segbench.volume.sliding_window_predict`) with nnU-Net's own
  Gaussian, tile step and mirroring axes, the network called through the runtime, then the way
  back: ``back="nnunet"`` nnU-Net's export (every class map resampled to the CT's grid at once,
  as nnUNetPredictor does) or ``back="chunked"`` a few class maps at a time with a running
  argmax (:func:`segbench.pipelines.resample.labels_back_probabilities`: the same argmax,
  a fraction of the memory), then the crop and transpose undone; or ``back="slabs"``, the memory
  trade: :func:`segbench.sliding.sliding_window_labels` (one slab of accumulators, the argmax
  taken slab by slab at the network's spacing), then the uint8 labels brought back as nnU-Net
  resamples a segmentation at order 0 (:func:`labels_back_nearest`). That is not nnU-Net's way
  back (it resamples class probabilities, then takes the argmax), so labels may move at organ
  borders; the row's Dice against nnUNetPredictor says how far.

Pre- and post-processing are nnU-Net's own functions, not copies: the pipeline's labels must
agree with nnUNetPredictor's (Dice >= 0.99 at FP32) before its speed counts, and using the
maintained code is how they agree. nnU-Net (the ``peers`` dependency group) must be installed.
Axis order is the array's (z, y, x), spacing in the same order, as nnU-Net's SimpleITK reader
gives them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from segbench.ownnet.nnunet_folder import CHECKPOINT, ModelFolder, cached_folder

BACKS = ("nnunet", "chunked", "slabs")


@dataclass(frozen=True)
class NnunetPipeline:
    """One way to run a model folder on a whole CT (see the module's docstring)."""

    model_dir: str
    classes: int
    patch: tuple[int, ...]
    fold: str = "0"
    configuration: str = ""
    checkpoint: str = CHECKPOINT
    step: float = 0.5  # nnUNetv2_predict's default tile step
    mirror: bool = True  # over the axes the checkpoint allows (none: no mirroring)
    accumulate: str = "float16"  # nnU-Net's accumulators are half
    back: str = "nnunet"
    predictor: bool = False
    kind: str = "nnunet"

    def __post_init__(self) -> None:
        if self.back not in BACKS:
            raise ValueError(f"back must be one of {', '.join(BACKS)}, got {self.back!r}")

    @classmethod
    def of_folder(cls, folder: ModelFolder, **settings: Any) -> "NnunetPipeline":
        return cls(model_dir=str(folder.path), classes=folder.classes, patch=folder.patch,
                   fold=folder.fold, configuration=folder.configuration,
                   checkpoint=folder.checkpoint.name, **settings)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patch"] = list(self.patch)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NnunetPipeline":
        data = dict(data)
        data["patch"] = tuple(data["patch"])
        return cls(**data)

    def folder(self) -> ModelFolder:
        return cached_folder(self.model_dir, self.fold, self.configuration, self.checkpoint)

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        """Spatial axes mirrored at inference: the checkpoint's, if mirroring is on."""
        return self.folder().mirror_axes if self.mirror else None

    @property
    def input_channels(self) -> int:
        return 1

    def grid(self, ct_shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, ...]:
        """The grid the network sees (nnU-Net's ``compute_new_shape`` after the transpose;
        the crop to the non-zero box, rarely anything for a CT, is not foreseen here)."""
        folder = self.folder()
        order = folder.plans.get("transpose_forward", [0, 1, 2])
        shape = [ct_shape[i] for i in order]
        old = [spacing[i] for i in order]
        return tuple(int(round(o / n * s)) for o, n, s in zip(old, folder.spacing, shape))

    def passes(self, ct_shape: Sequence[int], spacing: Sequence[float]) -> int:
        from segbench import tiling

        axes = self.mirror_axes
        tiles = tiling.tile_count(self.grid(ct_shape, spacing), self.patch, self.step)
        return tiles * (2 ** len(axes) if axes else 1)

    def scenario_bytes(self, ct_shape: Sequence[int], spacing: Sequence[float]) -> int:
        """Bytes the loop holds besides one tile's forward pass: :meth:`buffer_bytes` on the
        grid the network sees."""
        return self.buffer_bytes(self.grid(ct_shape, spacing), ct_shape)

    def buffer_bytes(self, grid: Sequence[int], ct_shape: Sequence[int]) -> int:
        """The sliding window's buffers on ``grid`` (:func:`segbench.sliding.low_memory_bytes`
        without the tile's output, which the forward pass's estimate holds: the preprocessed
        grid; the full way's accumulators over the whole grid and two all-class product
        buffers, both float32 with nnU-Net's one rounding; the slab way's one slab of
        accumulators, chunk-deep products and the grid's uint8 labels), then the way back
        (``nnunet``: every class map on the CT's grid in float32, as nnU-Net's export resamples
        them all at once; ``chunked``: four at a time plus the running maximum and labels;
        ``slabs``: the uint8 labels on the CT's grid) and the CT itself (float32)."""
        from segbench.sliding import low_memory_bytes

        tile = math.prod(self.patch)
        slabs = self.back == "slabs" and not self.predictor
        window = low_memory_bytes(grid, self.patch, self.classes, self.accumulate)
        held = window["slabs" if slabs else "full"] - 4 * self.classes * tile
        if not slabs and self.accumulate != "float32":  # round_once: a float32 sum buffer
            held += 2 * self.classes * tile
        padded = math.prod(max(g, p) for g, p in zip(grid, self.patch))
        ct = math.prod(ct_shape)
        if self.predictor or self.back == "nnunet":
            back = ct * self.classes * 4 + padded * self.classes * 4
        elif self.back == "chunked":
            back = ct * (4 * 4 + 4 + 1)
        else:
            back = ct
        return held + back + ct * 4


# --------------------------------------------------------------------------------------------
# nnU-Net's pieces, made once per process


@dataclass
class Managers:
    plans: Any  # nnU-Net's PlansManager
    config: Any  # ConfigurationManager
    labels: Any  # LabelManager
    dataset: dict[str, Any]
    preprocessor: Any


@functools.lru_cache(maxsize=2)
def managers(model_dir: str, fold: str, configuration: str, checkpoint: str) -> Managers:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = cached_folder(model_dir, fold, configuration, checkpoint)
    plans = PlansManager(folder.plans)
    config = plans.get_configuration(folder.configuration)
    return Managers(plans, config, plans.get_label_manager(folder.dataset), folder.dataset,
                    config.preprocessor_class(verbose=False))


def managers_of(pipe: NnunetPipeline) -> Managers:
    return managers(pipe.model_dir, pipe.fold, pipe.configuration, pipe.checkpoint)


@functools.lru_cache(maxsize=2)
def _predictor(model_dir: str, fold: str, checkpoint: str, step: float, mirror: bool) -> Any:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_dir, use_folds=(fold,),
                                                   checkpoint_name=checkpoint)
    return predictor


def predictor_of(pipe: NnunetPipeline) -> Any:
    """nnUNetPredictor of the folder, initialised once (outside the timed loop)."""
    return _predictor(pipe.model_dir, pipe.fold, pipe.checkpoint, pipe.step, pipe.mirror)


def gaussian(patch: Sequence[int], accumulate: str) -> Any:
    """nnU-Net's own importance map (its predictor's call: sigma 1/8, scaled to 10)."""
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    dtype = torch.float32 if accumulate == "float32" else torch.float16
    return compute_gaussian(tuple(patch), sigma_scale=1.0 / 8, value_scaling_factor=10,
                            dtype=dtype, device=torch.device("cpu"))


# --------------------------------------------------------------------------------------------
# The loop


def preprocess(ct: Any, pipe: NnunetPipeline) -> tuple[np.ndarray, dict[str, Any]]:
    """nnU-Net's preprocessing of the CT: (channels, *grid) float32 and the properties the
    way back needs."""
    m = managers_of(pipe)
    data, _, props = m.preprocessor.run_case_npy(ct.hu[None], None,
                                                 {"spacing": [float(s) for s in ct.spacing]},
                                                 m.plans, m.config, m.dataset)
    return data, props


def labels_back(logits: Any, props: dict[str, Any], pipe: NnunetPipeline) -> np.ndarray:
    """Labels on the CT's grid from the logits on the network's grid."""
    import torch

    m = managers_of(pipe)
    if pipe.back == "nnunet":
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        return np.asarray(convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, m.plans, m.config, m.labels, props,
            num_threads_torch=torch.get_num_threads()))
    from segbench.pipelines.resample import argmax_labels, labels_back_probabilities

    shape = tuple(props["shape_after_cropping_and_before_resampling"])
    if tuple(logits.shape[1:]) == shape:
        seg = argmax_labels(logits)
    else:
        seg = labels_back_probabilities(logits, shape)
    out = np.zeros(tuple(props["shape_before_cropping"]), dtype=np.uint8)
    out[tuple(slice(lo, hi) for lo, hi in props["bbox_used_for_cropping"])] = seg
    return out.transpose(m.plans.transpose_backward)


def labels_back_nearest(seg: np.ndarray, props: dict[str, Any], pipe: NnunetPipeline,
                        rows: int = 16) -> np.ndarray:
    """Labels on the CT's grid from uint8 labels on the network's grid, in nnU-Net's export's
    order for a segmentation: resampled to the cropped shape (order 0, ``rows`` output slices
    at a time, written straight into the box), put back into the crop's box, the transpose
    undone. Holds the CT-sized uint8 output and one slab besides the grid's labels. The
    indices are :func:`segbench.pipelines.resample.nearest_indices` (grid mode, centres
    aligned: nnU-Net's order-0 resampling of a segmentation; a test checks the two agree)."""
    from segbench.pipelines.resample import nearest_indices
    m = managers_of(pipe)
    shape = tuple(props["shape_after_cropping_and_before_resampling"])
    out = np.zeros(tuple(props["shape_before_cropping"]), dtype=np.uint8)
    box = out[tuple(slice(lo, hi) for lo, hi in props["bbox_used_for_cropping"])]
    if tuple(seg.shape) == shape:
        box[...] = seg
    else:
        z, y, x = (nearest_indices(i, o) for i, o in zip(seg.shape, shape))
        for first in range(0, shape[0], rows):
            box[first:first + rows] = seg[np.ix_(z[first:first + rows], y, x)]
    return out.transpose(m.plans.transpose_backward)


def run(call: Any, ct: Any, pipe: NnunetPipeline, stages: Any) -> np.ndarray:
    """Segment ``ct`` (uint8 labels of its shape): nnUNetPredictor end to end, or the project's
    loop around ``call``."""

    if pipe.predictor:
        with stages.stage("nnU-Net predictor"):
            labels = predictor_of(pipe).predict_single_npy_array(
                ct.hu[None], {"spacing": [float(s) for s in ct.spacing]})
        return np.asarray(labels).astype(np.uint8, copy=False)
    with stages.stage("preprocess"):
        data, props = preprocess(ct, pipe)
    return infer(call, data, props, pipe, stages)


def infer(call: Any, data: np.ndarray, props: dict[str, Any], pipe: NnunetPipeline,
          stages: Any) -> np.ndarray:
    """The project's loop from nnU-Net's preprocessed CT: sliding window, then the way back
    (stages "predict", "accumulate", with ``slabs`` "argmax", then "resample back")."""
    from segbench import volume

    if pipe.back == "slabs":
        seg = volume.sliding_window_labels(
            call, data, pipe.patch, pipe.step, pipe.classes, mirror=pipe.mirror_axes or False,
            accumulate=pipe.accumulate, stages=stages,
            weights=gaussian(pipe.patch, pipe.accumulate))
        del data
        with stages.stage("resample back"):  # nearest neighbour, the crop and transpose undone
            return labels_back_nearest(seg, props, pipe)
    logits = volume.sliding_window_predict(
        call, data, pipe.patch, pipe.step, pipe.classes, mirror=pipe.mirror_axes or False,
        accumulate=pipe.accumulate, stages=stages, weights=gaussian(pipe.patch, pipe.accumulate),
        round_once=True)  # nnU-Net's rounding: the accumulators are bit-identical to its own
    del data
    with stages.stage("resample back"):  # includes the argmax, the crop and transpose undone
        return labels_back(logits, props, pipe).astype(np.uint8, copy=False)


def example_pass(ct: Any, pipe: NnunetPipeline) -> Any:
    """The centre tile of the preprocessed CT (export traces it, the estimate times it)."""
    from segbench.pipelines.inputs import centre_tile

    data, _ = preprocess(ct, pipe)
    return centre_tile(data[0], pipe.patch)


def calibration_passes(ct: Any, pipe: NnunetPipeline, count: int) -> list[np.ndarray]:
    """INT8 calibration inputs: ``count`` tiles of the preprocessed CT, spread over the tile
    grid (a user's model has no calibration split: the CT given is the sample)."""
    import itertools

    from segbench import volume

    data, _ = preprocess(ct, pipe)
    x = np.pad(data[0], volume.padding_to_patch(data.shape[1:], pipe.patch))
    tiles = list(itertools.product(*volume.tile_grid(x.shape, pipe.patch, pipe.step)))
    picks = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, count)]
    return [np.ascontiguousarray(x[tuple(slice(s, s + p) for s, p in zip(starts, pipe.patch))]
                                 [None, None]) for starts in picks]
