"""Planting the home: a temporary TotalSegmentator home holding, per mode, the dataset.json,
plans.json and a random-weight ``checkpoint_final.pth`` of the architecture the tool loads, and a
config.json with usage statistics off. Nothing is downloaded; the labels are meaningless, the
time is the tool's.

Checkpoints written here are ``torch.save`` files because that is what nnU-Net loads; the
project's own loading stays ``weights_only=True``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from segbench.models.nets3d import PLAIN_UNETS, PlainUNetConfig, build_plain_unet
from segbench.peers.totalseg.plans import CONFIGURATION, Layout, plans_for, tool_layout

PLANTED = "segbench_planted.json"  # what plant_home wrote, kept in the home
WEIGHTS_NOTE = ("random weights of the shipped architecture planted in a temporary home: the "
                "time is the tool's, the labels are meaningless (speed only)")

# The networks the tool loads for --fast and --fastest. The 3 mm one is the project's own
# configuration of Dataset297 (5 stages, patch 112x112x128; 16,603,736 parameters with 118
# outputs). The tool's source does not carry the 6 mm network's plans; what is planted for it is
# the same PlainConvUNet at 6 mm, which is an assumption the record states.
NETWORKS: dict[str, PlainUNetConfig] = {
    "fast": PLAIN_UNETS["totalseg-3mm"],
    "fastest": replace(PLAIN_UNETS["totalseg-3mm"], spacing_mm=6.0,
                       display="TotalSegmentator --fastest 6 mm (nnU-Net)"),
}
ARCHITECTURE_SOURCE = {
    "fast": "Dataset297 plans as the project configures them (nets3d totalseg-3mm)",
    "fastest": "assumed: the 3 mm network's architecture and patch at 6 mm (the 6 mm plans are "
               "not in the tool's source)",
}


def dataset_json(layout: Layout) -> dict[str, Any]:
    labels = {"background": 0, **{name: idx for idx, name in sorted(layout.class_names.items())}}
    return {"name": layout.folder, "description": WEIGHTS_NOTE, "channel_names": {"0": "CT"},
            "labels": labels, "numTraining": 0, "file_ending": ".nii.gz"}


def tool_config() -> dict[str, Any]:
    """The home's config.json: no usage statistics, the statistics notice already shown."""
    return {"totalseg_id": "totalseg_segbench", "send_usage_stats": False,
            "prediction_counter": 0, "statistics_disclaimer_shown": True}


def plant_home(home: Path, modes: Sequence[str] = ("fast", "fastest"),
               networks: dict[str, PlainUNetConfig] | None = None, seed: int = 0
               ) -> dict[str, dict[str, Any]]:
    """Write a TotalSegmentator home with random-weight networks for ``modes``.

    ``networks`` overrides the architecture per mode (tests plant a tiny one; it still goes
    through the tool's and nnU-Net's loading code). Returns, per mode, the model folder and the
    planted network's parameter count.
    """
    import torch

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(tool_config(), indent=2))
    planted: dict[str, dict[str, Any]] = {}
    for mode in modes:
        layout = tool_layout(mode)
        net_config = (networks or NETWORKS)[mode]
        torch.manual_seed(seed)
        net = build_plain_unet(net_config, layout.outputs)
        model_dir = layout.model_dir(home)
        (model_dir / "fold_0").mkdir(parents=True, exist_ok=True)
        plans = plans_for(layout, net_config)
        dataset = dataset_json(layout)
        (model_dir / "plans.json").write_text(json.dumps(plans, indent=2))
        (model_dir / "dataset.json").write_text(json.dumps(dataset, indent=2))
        checkpoint = {
            "network_weights": net.state_dict(),
            "trainer_name": layout.trainer,
            "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": 0,
                          "dataset_json": dataset, "device": "cpu"},
            "inference_allowed_mirroring_axes": None,  # a NoMirroring trainer
            "current_epoch": 0,
            "segbench_note": WEIGHTS_NOTE,
        }
        torch.save(checkpoint, model_dir / "fold_0" / "checkpoint_final.pth")
        planted[mode] = {"model_dir": str(model_dir), "task_id": layout.task_id,
                         "params": sum(p.numel() for p in net.parameters()),
                         "outputs": layout.outputs, "patch": list(net_config.patch),
                         "spacing_mm": layout.spacing_mm, "trainer": layout.trainer,
                         "architecture_source": ARCHITECTURE_SOURCE.get(mode, "given")}
    earlier = json.loads((home / PLANTED).read_text()) if (home / PLANTED).exists() else {}
    (home / PLANTED).write_text(json.dumps({**earlier, **planted}, indent=2))
    return planted


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segbench.peers.totalseg.planting HOME [--mode fast]``: plant a home and print
    the model folder of each mode (an nnU-Net v2 model folder own_model can run)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m segbench.peers.totalseg.planting",
                                     description=main.__doc__)
    parser.add_argument("home", type=Path)
    parser.add_argument("--mode", action="append", choices=sorted(NETWORKS))
    args = parser.parse_args(argv)
    for mode, info in plant_home(args.home, modes=args.mode or ["fast"]).items():
        print(f"{mode}: {info['model_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
