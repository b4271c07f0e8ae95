"""What the installed tool expects for one mode (task id, dataset folder, trainer,
resampling, class names: read from the package, :func:`tool_layout`), and the nnU-Net v2 plans
file whose architecture builds a given network exactly (:func:`plans_for`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.models.nets3d import PlainUNetConfig
from segbench.peers.totalseg.install import require_installed

PLANS_NAME = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
TASK = "total"


@dataclass(frozen=True)
class Layout:
    """Where and how the installed tool looks for one mode's network."""

    mode: str
    task_id: int
    folder: str  # dataset folder under <home>/nnunet/results
    trainer: str
    spacing_mm: float
    step_size: float
    class_names: dict[int, str]

    def model_dir(self, home: Path) -> Path:
        return (Path(home) / "nnunet" / "results" / self.folder
                / f"{self.trainer}__{PLANS_NAME}__{CONFIGURATION}")

    @property
    def outputs(self) -> int:
        return len(self.class_names) + 1  # background


def tool_layout(mode: str) -> Layout:
    """Read task id, folder, trainer and resampling of ``total --<mode>`` from the package."""
    require_installed()
    from totalsegmentator.map_tasks_config import TASK_CONFIGS, TASK_ID_WEIGHTS_CONFIGS
    from totalsegmentator.map_to_binary import class_map

    sub = TASK_CONFIGS[TASK]["sub_modes"][mode]
    task_id = int(sub["task_id"])
    # the tool slides its window with step 0.8 for the "total" task, 0.5 otherwise (nnunet.py)
    return Layout(mode=mode, task_id=task_id, folder=TASK_ID_WEIGHTS_CONFIGS[task_id]["foldername"],
                  trainer=sub["trainer"], spacing_mm=float(sub["resample"]), step_size=0.8,
                  class_names=dict(class_map[TASK]))


def plans_for(layout: Layout, net: PlainUNetConfig) -> dict[str, Any]:
    """An nnU-Net v2 plans file whose 3d_fullres architecture builds ``net`` exactly as
    :func:`segbench.models.nets3d.build_plain_unet` does (the state-dict keys must match).

    The CT normalisation statistics are placeholders of a plausible body CT: they change the
    normalised values, not the work done on them.
    """
    spacing = [layout.spacing_mm] * 3
    patch = list(net.patch)
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": net.stages,
            "features_per_stage": list(net.features),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * net.stages,
            "strides": [[s, s, s] for s in net.strides],
            "n_conv_per_stage": [2] * net.stages,
            "n_conv_per_stage_decoder": [2] * (net.stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"resampling_fn_data": "resample_data_or_seg_to_shape",
                  "resampling_fn_seg": "resample_data_or_seg_to_shape",
                  "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                  "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                                "force_separate_z": None},
                  "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                               "force_separate_z": None},
                  "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1,
                                                         "order_z": 0, "force_separate_z": None}}
    return {
        "dataset_name": layout.folder,
        "plans_name": PLANS_NAME,
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": patch,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {CONFIGURATION: {
            "data_identifier": f"{PLANS_NAME}_{CONFIGURATION}",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": patch,
            "median_image_size_in_voxels": patch,
            "spacing": spacing,
            "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False],
            **resampling,
            "architecture": arch,
            "batch_dice": False,
        }},
        "experiment_planner_used": "segbench.peers.totalseg (planted, random weights)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 3000.0, "mean": 40.0, "median": 45.0, "min": -1024.0,
            "percentile_00_5": -1000.0, "percentile_99_5": 1500.0, "std": 350.0}},
    }
