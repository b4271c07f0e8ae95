"""The TotalSegmentator peer: stage-line parsing, the missing-group error, and (with the peers
group installed: ``uv sync --group peers``) the planted networks loaded by nnU-Net's own
predictor and the real CLI run offline on a tiny CT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segbench import cli, measure
from segbench.models.nets3d import PlainUNetConfig
from segbench.peers.totalseg import install, launch, plans, planting, runner, stagelog
from segbench.results import Record

ROOT = Path(__file__).resolve().parents[1]
needs_group = pytest.mark.skipif(
    not install.installed(),
    reason=f"needs the optional peers dependency group ({install.INSTALL_COMMAND}); "
           f"CI runs these with 'uv run --group peers pytest tests/test_peers.py'")

TINY = PlainUNetConfig(features=(4, 8, 16), strides=(1, 2, 2), patch=(32, 32, 32),
                       spacing_mm=3.0, display="tiny test network")

# Console output of `TotalSegmentator -i ct.nii.gz -o seg.nii.gz --fast --ml` (2.18.0) on a
# 512x512x280 CT, stdout and stderr together, the progress bar's carriage returns kept.
RECORDED_LOG = (
    "\nIf you use this tool please cite: https://pubs.rsna.org/doi/10.1148/ryai.230024\n\n"
    "Using 'fast' option: resampling to lower resolution (3mm)\n"
    "Resampling...\n  Resampled in 0.93s\nPredicting...\n"
    "\r  0%|          | 0/8 [00:00<?, ?it/s]"
    "\r 12%|█▎        | 1/8 [00:08<01:00,  8.62s/it]"
    "\r100%|██████████| 8/8 [01:07<00:00,  8.41s/it]"
    "\r100%|██████████| 8/8 [01:07<00:00,  8.43s/it]\n"
    "  Predicted in 100.12s\nResampling...\n  Resampled in 0.81s\n"
    "Saving segmentations...\n  Saved in 1.10s\n")


def test_parse_stages_reads_recorded_log():
    stages = stagelog.parse_stages(RECORDED_LOG)
    assert stages == {"resample_s": 0.93, "predict_s": 100.12, "resample_back_s": 0.81,
                      "save_s": 1.10, "tiles": 8, "sliding_window_s": 67.0}


def test_parse_stages_per_class_files_and_missing_lines():
    log = ("Resampling...\n  Resampled in 1.00s\nPredicting...\n  Predicted in 2.50s\n"
           "Saving segmentations...\nCreating spleen.nii.gz\nCreating liver.nii.gz\n"
           "  Saved in 38.20s\n 5/8 [1:00:05<00:10]\n")
    stages = stagelog.parse_stages(log)
    # no "Resampled" after prediction and an unfinished bar: those stay missing
    assert stages == {"resample_s": 1.0, "predict_s": 2.5, "save_s": 38.2}
    assert stagelog.parse_stages("8/8 [1:02:03<00:00, 1.0s/it]")["sliding_window_s"] == 3723.0


def test_stage_medians_take_medians_over_runs():
    stages = stagelog.stage_medians([{"predict_s": 10.0, "tiles": 8, "sliding_window_s": 6.0},
                                     {"predict_s": 12.0, "tiles": 8, "sliding_window_s": 8.0}])
    assert stages["predict"] == {"seconds": 11.0, "runs_s": [10.0, 12.0]}
    assert stages["sliding_window"]["tiles"] == 8


def test_whole_runs_on_a_fake_clock():
    ticks = iter([0.0, 100.0, 100.0, 110.0])
    runs = measure.time_whole_runs(lambda i: i, repeats=2, clock=lambda: next(ticks))
    stats = runs.to_dict()
    assert runs.results == [0, 1]
    assert stats["runs_s"] == [100.0, 10.0] and stats["median_s"] == 55.0
    assert stats["spread"] == pytest.approx(90.0 / 55.0) and stats["noisy"]


def _peer(window: float | None, whole: float) -> Record:
    rec = Record(benchmark="whole_ct", key="peer:totalsegmentator:fast:ml", model="m",
                 runtime="as-shipped", shape=[280, 512, 512], batch=1, threads=2)
    rec.timing = {"median_s": whole}
    if window:
        rec.extra["tool_stages"] = {"sliding_window": {"seconds": window}}
    return rec


def test_faithfulness_ratios():
    out = runner.faithfulness(own_network_s=60.0, own_pipeline_s=66.0, peer=_peer(67.0, 120.0))
    assert out["network_ratio"] == pytest.approx(60 / 67)
    assert out["pipeline_ratio"] == pytest.approx(0.55)
    assert out["differs"] == ["pipeline_ratio"]
    failed = _peer(None, 1.0)
    failed.status, failed.reason = "failed", "exit 1: boom"
    assert runner.faithfulness(1.0, 1.0, failed) == {"status": "failed", "reason": "exit 1: boom"}


def test_missing_group_is_one_line(monkeypatch):
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name, *a: None)
    assert not install.installed()
    with pytest.raises(cli.UsageError, match="uv sync --group peers"):
        install.check_available()
    rec = runner.run_peer(Path("ct.nii.gz"), "fast", True, Path("unused"), repeats=1)
    assert rec.status == "failed" and "uv sync --group peers" in rec.reason


HIDE_PEERS = """\
import importlib.util, runpy, sys
_real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: (
    None if name.split(".")[0] in ("totalsegmentator", "nnunetv2") else _real(name, *a, **k))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def parser_options(script: Path) -> set[str]:
    """Every option string the command line of a benchmark script accepts."""
    from segbench.bench import load_script

    b = load_script(script)
    parser = cli.build_parser(f"benchmarks/{b.name}/benchmark.py", b.title, b.add_arguments)
    return {opt for action in parser._actions for opt in action.option_strings}


def test_peers_option_without_group_exits_2(tmp_path):
    script = ROOT / "benchmarks" / "whole_ct" / "benchmark.py"
    # never skipped: the option must be one the benchmark's parser registers (a comment or a
    # help text naming it proves nothing)
    assert "--peers" in parser_options(script)
    proc = subprocess.run([sys.executable, "-c", HIDE_PEERS, str(script), "--peers", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "uv sync --group peers" in lines[0]
    assert not any(tmp_path.rglob("*.json"))


# --------------------------------------------------------------------------------------------
# With the group installed


def _tiny_ct(tmp_path: Path) -> tuple[np.ndarray, Path]:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1000, size=(40, 48, 56)).astype(np.int16)  # (z, y, x)
    return hu, launch.write_ct(hu, (1.5, 1.0, 1.0), tmp_path / "ct.nii.gz")


@needs_group
def test_planted_fast_network_is_the_tools(tmp_path, monkeypatch):
    home = tmp_path / "home"
    planted = planting.plant_home(home, modes=("fast",))["fast"]
    layout = plans.tool_layout("fast")
    assert (layout.task_id, layout.spacing_mm) == (297, 3.0)
    assert planted["params"] == 16_603_736 and planted["outputs"] == 118
    assert planted["patch"] == [112, 112, 128]
    labels = json.loads((Path(planted["model_dir"]) / "dataset.json").read_text())["labels"]
    assert len(labels) == 118 and labels["spleen"] == 1
    assert json.loads((home / "config.json").read_text())["send_usage_stats"] is False

    # the tool's own check that weights are present is that the dataset folder exists
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    from totalsegmentator import config
    assert (config.get_weights_dir() / layout.folder).is_dir()

    predictor = _predictor(Path(planted["model_dir"]))
    assert predictor.label_manager.num_segmentation_heads == 118
    assert sum(p.numel() for p in predictor.network.parameters()) == 16_603_736


def _predictor(model_dir: Path):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ.setdefault(var, str(model_dir.parent.parent))
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.8, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=(0,),
                                                   checkpoint_name="checkpoint_final.pth")
    return predictor


@needs_group
def test_tiny_planted_network_predicts_a_label_volume(tmp_path):
    planted = planting.plant_home(tmp_path / "home", modes=("fast",), networks={"fast": TINY})
    predictor = _predictor(Path(planted["fast"]["model_dir"]))
    image = np.random.default_rng(1).normal(0, 300, size=(1, 20, 24, 28)).astype(np.float32)
    seg = predictor.predict_single_npy_array(image, {"spacing": [3.0, 3.0, 3.0]})
    assert seg.shape == image.shape[1:]
    assert seg.min() >= 0 and seg.max() < 118


def _snapshot_outside(paths: list[Path]) -> dict[str, float]:
    out = {}
    for base in paths:
        if base.exists():
            for p in base.iterdir():
                if "totalseg" in p.name.lower() or "nnunet" in p.name.lower():
                    out[str(p)] = p.stat().st_mtime
    return out


@needs_group
def test_cli_runs_offline_on_a_tiny_ct(tmp_path):
    """The real command, network refused, downloads refused: a label volume of the CT's shape,
    no connection attempted, nothing written outside the temporary directory."""
    import nibabel as nib

    outside = [Path.home(), Path("/tmp"), ROOT]
    before = _snapshot_outside(outside)
    hu, ct = _tiny_ct(tmp_path)
    planting.plant_home(tmp_path / "home", networks={"fast": TINY, "fastest": TINY})
    rec = runner.run_peer(ct, "fast", True, tmp_path, repeats=1, timeout_s=600,
                            shape=hu.shape, keep_outputs=True)
    run_dir = tmp_path / "run-fast-ml-0"
    log = (run_dir / "log.txt").read_text()
    assert rec.status == "ok", rec.reason + "\n" + log
    assert rec.runtime_info["network_attempts"] == 0
    assert not (run_dir / launch.NETWORK_LOG).exists()
    assert rec.runtime_info["outputs"] == 1
    assert rec.params == rec.extra["planted"]["fast"]["params"]
    assert {"resample", "predict", "resample_back", "save", "sliding_window"} <= set(
        rec.extra["tool_stages"])
    assert rec.memory["peak_rss_tree_mb"] >= rec.memory["peak_pss_tree_mb"] > 0
    assert rec.runtime_info["max_threads"] >= 1 and rec.runtime_info["max_processes"] >= 1
    assert rec.extra["display"].startswith("TotalSegmentator ")
    assert "--fast --ml" in rec.extra["display"]
    seg = np.asarray(nib.load(run_dir / "seg.nii.gz").dataobj)
    assert seg.shape == hu.shape[::-1]  # NIfTI axes are (x, y, z)
    assert _snapshot_outside(outside) == before


@needs_group
def test_missing_weights_fail_as_a_row_without_download(tmp_path):
    import shutil

    _, ct = _tiny_ct(tmp_path)
    planted = planting.plant_home(tmp_path / "home", networks={"fast": TINY, "fastest": TINY})
    shutil.rmtree(Path(planted["fastest"]["model_dir"]).parent)  # the tool would now download
    rec = runner.run_peer(ct, "fastest", True, tmp_path, repeats=2, timeout_s=600)
    assert rec.status == "failed" and rec.timing is None
    assert "download" in rec.reason
    assert len(rec.extra["runs"]) == 1  # a broken command is not timed again
    assert rec.runtime_info["network_attempts"] == 0


def test_network_guard_refuses_and_records(tmp_path):
    env = launch.environment(tmp_path / "home", tmp_path, tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    probe = ("import socket\n"
             "try:\n"
             "    socket.create_connection(('example.com', 80), timeout=2)\n"
             "except OSError as exc:\n"
             "    print(type(exc).__name__)\n"
             "try:\n"
             "    socket.socket().connect(('192.0.2.1', 80))\n"
             "except OSError as exc:\n"
             "    print(type(exc).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["gaierror", "OSError"]
    attempts = (tmp_path / launch.NETWORK_LOG).read_text().splitlines()
    assert len(attempts) == 2 and "example.com" in attempts[0]
    assert env["https_proxy"] == launch.CLOSED_PROXY and env["TOTALSEG_HOME_DIR"].endswith("home")
