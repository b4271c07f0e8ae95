"""The real TotalSegmentator, run as its users run it (``TotalSegmentator -i ct.nii.gz -o out
--fast``).

The project's 3D rows are its own re-implementation of TotalSegmentator's network and loop; this
module puts the tool itself beside them, so a reader sees what the shipped command costs on the
same CT in the same run, and how faithful the re-implementation is.

Nothing is downloaded. Before a run, :func:`plant_home` writes a TotalSegmentator home (a
temporary directory named by ``TOTALSEG_HOME_DIR``; never the user's home) holding, for each
mode, what the tool would otherwise fetch: nnU-Net's ``dataset.json``, ``plans.json`` and
``fold_0/checkpoint_final.pth`` of a network of exactly the architecture the tool loads, with
random weights. The tool decides the weights are present when the dataset folder exists, so it
goes straight to prediction. Random weights make the labels meaningless, not the time: the same
convolutions run on the same shapes (speed only; nothing here measures quality).

The folder names, trainer, resampling and class names are read from the installed package
(:func:`tool_layout`), so a new TotalSegmentator release that moves them is followed, not
contradicted. The run is kept off the network three ways: the home's ``config.json`` turns
usage statistics off, the proxy variables point at a closed local port, and (by default) a
``sitecustomize`` module in the run directory makes every Python process of the command refuse
internet sockets and write down any attempt, which the record reports.

Checkpoints written here are ``torch.save`` files because that is what nnU-Net loads; the
project's own loading stays ``weights_only=True``. ``totalsegmentator`` and ``nnunetv2`` are
imported inside functions only: they are an optional dependency group.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segbench import measure, stop
from segbench.models.nets3d import PLAIN_UNETS, PlainUNetConfig, build_plain_unet
from segbench.results import Record
from segbench.stop import descendants

INSTALL_COMMAND = "uv sync --group peers"
PACKAGES = ("totalsegmentator", "nnunetv2")
EXECUTABLE = "TotalSegmentator"
PLANS_NAME = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
TASK = "total"
CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a connect fails at once
NETWORK_LOG = "network_attempts.log"
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


class PeerUnavailable(Exception):
    """The peers dependency group is not installed."""


def installed() -> bool:
    """Whether the peers group is installed (found without importing it: importing nnU-Net
    pulls in torch and sets environment variables)."""
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


def require_installed() -> None:
    if not installed():
        raise PeerUnavailable(f"the TotalSegmentator peer needs its dependency group: run "
                              f"'{INSTALL_COMMAND}' (or prefix the command with 'uv run --group "
                              f"peers')")


def check_available() -> None:
    """For a benchmark's --peers option: a missing group is a user mistake, one line, exit 2."""
    from segbench.cli import UsageError

    if not installed():
        raise UsageError(f"--peers needs the optional TotalSegmentator group: run "
                         f"'{INSTALL_COMMAND}' first")


def versions() -> dict[str, str]:
    out = {}
    for name in ("totalsegmentator", "nnunetv2", "torch", "dynamic-network-architectures",
                 "nibabel", "SimpleITK"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def label(mode: str, ml: bool, pkg: dict[str, str] | None = None) -> str:
    """The row's name: the tool, its version and options, and what runs underneath."""
    pkg = versions() if pkg is None else pkg
    opts = f"--{mode}" + (" --ml" if ml else " (one file per class)")
    return (f"TotalSegmentator {pkg.get('totalsegmentator', '?')} {opts}, as shipped "
            f"(nnU-Net {pkg.get('nnunetv2', '?')}, PyTorch {pkg.get('torch', '?')} eager)")


# --------------------------------------------------------------------------------------------
# What the installed tool expects


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


# --------------------------------------------------------------------------------------------
# Planting the home


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


# --------------------------------------------------------------------------------------------
# The CT file and the command


def write_ct(hu_zyx: np.ndarray, spacing_zyx: Sequence[float], path: Path) -> Path:
    """Write a (z, y, x) HU volume as NIfTI, as a scanner export would hand it to the tool:
    int16, voxel axes (x, y, z) with the spacing on the diagonal of the affine."""
    import nibabel as nib

    data = np.ascontiguousarray(np.asarray(hu_zyx).transpose(2, 1, 0)).astype(np.int16)
    sz, sy, sx = (float(s) for s in spacing_zyx)
    image = nib.Nifti1Image(data, np.diag([sx, sy, sz, 1.0]))
    image.header.set_xyzt_units("mm")
    path = Path(path)
    nib.save(image, path)
    return path


def executable() -> str:
    """The console script of the installed tool (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name(EXECUTABLE)
    if beside.exists():
        return str(beside)
    found = shutil.which(EXECUTABLE)
    if found is None:
        raise PeerUnavailable(f"the {EXECUTABLE} command is not installed; run "
                              f"'{INSTALL_COMMAND}'")
    return found


# What the console script does (import the CLI's main and call it), after replacing the two
# functions that fetch weights by one that refuses: if the planted network were not where the
# tool looks, the run fails with a reason instead of downloading. Nothing else changes.
LAUNCHER = """\
import sys
import totalsegmentator.libs as libs

def _refuse(*args, **kwargs):
    raise RuntimeError("segbench peer run: the tool tried to download weights (planted network "
                       "not found); downloads are refused")

libs.download_url_and_unpack = _refuse
libs.download_model_with_license_and_unpack = _refuse
from totalsegmentator.bin.TotalSegmentator import main
sys.argv[0] = "TotalSegmentator"
sys.exit(main())
"""


def tool_args(ct: Path, out: Path, mode: str, ml: bool) -> list[str]:
    """The arguments users type, with the device said explicitly (the tool's default 'gpu'
    falls back to the CPU here anyway)."""
    args = ["-i", str(ct), "-o", str(out), f"--{mode}", "--device", "cpu"]
    return args + ["--ml"] if ml else args


def command(ct: Path, out: Path, mode: str, ml: bool, forbid_download: bool = True) -> list[str]:
    """The process to start: the console script, or (``forbid_download``) the same main()
    started by :data:`LAUNCHER` with the interpreter the console script runs on."""
    script = executable()
    if not forbid_download:
        return [script, *tool_args(ct, out, mode, ml)]
    python = Path(script).with_name("python")
    return [str(python if python.exists() else sys.executable), "-c", LAUNCHER,
            *tool_args(ct, out, mode, ml)]


SITECUSTOMIZE = '''\
"""Installed by segbench for a TotalSegmentator peer run: internet sockets are refused, and
every attempt is written down so the run's record can say whether the tool reached out."""
import os
import socket

_LOG = os.environ.get("SEGBENCH_NETWORK_LOG")
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _note(what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\\n")


def _guard(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _note(f"connect {address!r}")
        raise OSError("network access is blocked for this run (segbench peer)")


def connect(self, address):
    _guard(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _guard(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        _note(f"resolve {host!r}")
        raise socket.gaierror("network access is blocked for this run (segbench peer)")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
'''


def environment(home: Path, run_dir: Path, tmp: Path, block_network: bool = True
                ) -> dict[str, str]:
    """The command's environment: the planted home, caches under the run directory, temporary
    files in ``tmp`` (a short path: nnU-Net's worker processes put unix sockets there, whose
    paths may not exceed 107 bytes), proxies at a closed port, and (``block_network``) the
    socket guard."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOTALSEG_", "nnUNet_")) and k != "RESULTS_FOLDER"}
    env.update({
        "TOTALSEG_HOME_DIR": str(home), "HOME": str(home), "TMPDIR": str(tmp),
        "XDG_CACHE_HOME": str(run_dir / "cache"), "MPLCONFIGDIR": str(run_dir / "mpl"),
        "TORCHINDUCTOR_CACHE_DIR": str(run_dir / "cache" / "inductor"),
        "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY, "HTTP_PROXY": CLOSED_PROXY,
        "HTTPS_PROXY": CLOSED_PROXY, "ALL_PROXY": CLOSED_PROXY, "all_proxy": CLOSED_PROXY,
        "NO_PROXY": "", "no_proxy": "",
        "SEGBENCH_NETWORK_LOG": str(run_dir / NETWORK_LOG),
    })
    if block_network:
        guard = run_dir / "guard"
        guard.mkdir(parents=True, exist_ok=True)
        (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(guard)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


# --------------------------------------------------------------------------------------------
# The tool's own stage lines


STAGES = ("resample_s", "predict_s", "resample_back_s", "save_s")  # what the tool prints
_STAGE_LINE = re.compile(r"^\s*(Resampled|Predicted|Saved) in ([0-9.]+)s\s*$")
_TQDM = re.compile(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")


def parse_stages(log: str) -> dict[str, Any]:
    """The tool's stage times from its console output (stdout and stderr together).

    It prints "Resampling..." / "  Resampled in 0.93s" before prediction (to the model's
    spacing) and again after (back to the CT's grid), "  Predicted in ...s" and "  Saved in
    ...s". Inside prediction, nnU-Net's progress bar ends with "8/8 [01:07<00:00": the sliding
    window's tile count and its seconds (whole seconds only). Missing lines stay missing.
    """
    stages: dict[str, Any] = {}
    predicted = False
    for line in re.split(r"[\r\n]+", log):
        m = _STAGE_LINE.match(line)
        if not m:
            continue
        word, seconds = m.group(1), float(m.group(2))
        if word == "Resampled":
            stages["resample_back_s" if predicted else "resample_s"] = seconds
        elif word == "Predicted":
            stages["predict_s"] = seconds
            predicted = True
        else:
            stages["save_s"] = seconds
    bars = [m for m in _TQDM.finditer(log) if m.group(1) == m.group(2)]
    if bars:
        last = bars[-1]
        hours = int(last.group(3) or 0)
        stages["tiles"] = int(last.group(2))
        stages["sliding_window_s"] = float(hours * 3600 + int(last.group(4)) * 60
                                           + int(last.group(5)))
    return stages


# --------------------------------------------------------------------------------------------
# Running and watching the command


@dataclass
class TreeWatch:
    """Peak memory and threads of a process and its descendants, sampled from /proc."""

    root: int
    interval_s: float = 0.25  # a sample costs a few ms of CPU: about 1 % of a core
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0  # shared pages (torch's libraries in every worker) counted once
    max_threads: int = 0
    max_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "TreeWatch":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        rss_kb, pss_kb, threads, procs = 0, 0, 0, 0
        for pid in descendants(self.root):
            status = _status(pid)
            if status is None:
                continue
            procs += 1
            rss_kb += status.get("VmRSS", 0)
            pss_kb += status.get("Pss", 0)
            threads += status.get("Threads", 0)
        self.peak_rss_mb = max(self.peak_rss_mb, rss_kb / 1024)
        self.peak_pss_mb = max(self.peak_pss_mb, pss_kb / 1024)
        self.max_threads = max(self.max_threads, threads)
        self.max_processes = max(self.max_processes, procs)


def _status(pid: int) -> dict[str, int] | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
                break
    except OSError:
        pass
    return out


@dataclass
class CommandRun:
    """One run of the command: how it ended, what it printed, what it held."""

    returncode: int | None  # None: killed at the timeout
    log: str
    peak_rss_tree_mb: float
    peak_pss_tree_mb: float
    peak_rss_largest_mb: float
    max_threads: int
    max_processes: int
    outputs: int  # files written under the output path
    output_bytes: int


def run_command(cmd: list[str], env: dict[str, str], log_path: Path, out: Path,
                timeout_s: float) -> CommandRun:
    """Start ``cmd`` in its own session, watch its process tree, wait for it (killing the
    whole group at the timeout) and collect its log and outputs."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=env["TMPDIR"])
        watch = TreeWatch(proc.pid).start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # a stop (stop.Stopped): the command is in a session of its
            stop.end_group(proc)  # own, with nnU-Net's processes; none of it may outlive us
            raise
        finally:
            timer.cancel()
            watch.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else (
        [out] if out.exists() else [])
    return CommandRun(returncode=None if timed_out.is_set() else proc.returncode,
                      log=Path(log_path).read_text(errors="replace"),
                      peak_rss_tree_mb=watch.peak_rss_mb, peak_pss_tree_mb=watch.peak_pss_mb,
                      peak_rss_largest_mb=usage.ru_maxrss / 1024,  # kB on Linux
                      max_threads=watch.max_threads, max_processes=watch.max_processes,
                      outputs=len(files), output_bytes=sum(p.stat().st_size for p in files))


def _last_line(log: str) -> str:
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", log) if ln.strip()]
    return (lines[-1] if lines else "no output")[:200]


def run_peer(ct: Path, mode: str, ml: bool, work: Path, repeats: int = 2,
             timeout_s: float = 1800.0, shape: Sequence[int] = (), quick: bool = False,
             block_network: bool = True, forbid_download: bool = True,
             keep_outputs: bool = False, tool_options: Sequence[str] = (),
             benchmark: str = "whole_ct") -> Record:
    """Time ``TotalSegmentator -i <ct> -o <out> --<mode> [--ml]`` ``repeats`` times.

    ``work`` must be a temporary directory; the home is planted in ``work/home`` unless a
    planted home is already there, and every run writes under ``work``. A run that fails or
    times out ends the measurement: the record says which, with the tool's last line.
    ``shape`` is the CT's (z, y, x), for the row. Outputs are deleted after each run unless
    ``keep_outputs`` (``work/run-<mode>-.../seg*``). ``tool_options`` are more of the tool's
    own options (e.g. ``("--nr_thr_saving", "1")`` to see what nnU-Net's six export workers
    cost); they become part of the row's key and label.
    """
    pkg = versions()
    variant = "".join(f":{o.lstrip('-')}" for o in tool_options)
    record = Record(benchmark=benchmark,
                    key=f"peer:totalsegmentator:{mode}{':ml' if ml else ''}{variant}",
                    model=f"totalsegmentator-{mode}{'-ml' if ml else ''}",
                    runtime="as-shipped" if not tool_options else "options:" + " ".join(
                        tool_options),
                    shape=list(shape), batch=1, threads=os.cpu_count() or 1, family="peer",
                    weights="random-planted", quick=quick, packages=pkg,
                    extra={"display": label(mode, ml, pkg) + "".join(
                               f" {o}" for o in tool_options),
                           "weights_note": WEIGHTS_NOTE, "tool_options": list(tool_options),
                           "peer": "TotalSegmentator", "mode": mode, "multilabel": ml})
    try:
        require_installed()
        work = Path(work)
        home = work / "home"
        record.extra["planted"] = (json.loads((home / PLANTED).read_text())
                                   if (home / PLANTED).exists() else {})
        if mode not in record.extra["planted"]:
            record.extra["planted"].update(plant_home(home, modes=(mode,)))
            (home / PLANTED).write_text(json.dumps(record.extra["planted"], indent=2))
        planted = record.extra["planted"][mode]
        record.params = planted["params"]
        record.classes = planted["outputs"]
    except Exception as exc:  # noqa: BLE001 - a peer that cannot start is a row with its reason
        record.status, record.reason = "failed", f"{type(exc).__name__}: {exc}"[:200]
        return record

    runs_meta: list[dict[str, Any]] = []

    def one(i: int) -> CommandRun:
        run_dir = work / f"run-{mode}-{'ml' if ml else 'files'}{variant.replace(':', '-')}-{i}"
        run_dir.mkdir(parents=True, exist_ok=True)
        out = run_dir / ("seg.nii.gz" if ml else "seg")
        cmd = command(ct, out, mode, ml, forbid_download) + list(tool_options)
        with tempfile.TemporaryDirectory(prefix="segbench-peer-") as tmp:
            env = environment(home, run_dir, Path(tmp), block_network)
            result = run_command(cmd, env, run_dir / "log.txt", out, timeout_s)
        attempts = (run_dir / NETWORK_LOG).read_text().splitlines() \
            if (run_dir / NETWORK_LOG).exists() else []
        runs_meta.append({"stages": parse_stages(result.log), "returncode": result.returncode,
                          "network_attempts": attempts,
                          "command": tool_args(ct, out, mode, ml) + list(tool_options)})
        if not keep_outputs:
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        return result

    runs = measure.WholeRuns(seconds=[])
    for i in range(repeats):  # stop at the first failure: a broken command is not re-timed
        single = measure.time_whole_runs(lambda _i, i=i: one(i), repeats=1)
        runs.seconds += single.seconds
        runs.results += single.results
        if single.results[0].returncode != 0:
            break
    last: CommandRun = runs.results[-1]
    record.extra["runs"] = runs_meta
    record.runtime_info = {"command": "TotalSegmentator " + " ".join(runs_meta[-1]["command"]),
                           "torch_threads": os.cpu_count(), "max_threads": max(
                               r.max_threads for r in runs.results),
                           "max_processes": max(r.max_processes for r in runs.results),
                           "outputs": last.outputs, "output_bytes": last.output_bytes,
                           "network_blocked": block_network,
                           "downloads_refused": forbid_download,
                           "network_attempts": sum(len(m["network_attempts"]) for m in runs_meta)}
    record.memory = {"peak_rss_tree_mb": max(r.peak_rss_tree_mb for r in runs.results),
                     "peak_pss_tree_mb": max(r.peak_pss_tree_mb for r in runs.results),
                     "peak_rss_largest_process_mb": max(r.peak_rss_largest_mb
                                                        for r in runs.results),
                     "how": "sums of VmRSS (shared pages counted in every process) and of "
                            "Pss (shared pages split) over the process tree, sampled every "
                            "0.25 s; the largest single process from wait4"}
    if last.returncode is None:
        record.status, record.reason = "timeout", f"no result within {timeout_s:.0f} s"
        return record
    if last.returncode != 0:
        record.status, record.reason = "failed", f"exit {last.returncode}: {_last_line(last.log)}"
        return record
    timing = runs.to_dict()
    timing["throughput"] = 1.0 / timing["median_s"]  # CTs per second, like items per second
    record.timing = timing
    record.parts = stage_parts([m["stages"] for m in runs_meta])
    # what the stage lines do not cover: interpreter start and imports, the tool's set-up,
    # reading the CT, undoing the canonical orientation, process exits
    other = [s - sum(m["stages"].get(k, 0.0) for k in STAGES)
             for s, m in zip(runs.seconds, runs_meta)]
    record.parts["outside_stages"] = {"seconds": float(np.median(other)), "runs_s": other}
    return record


def stage_parts(per_run: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median of each stage over the runs, with every run's value."""
    parts: dict[str, dict[str, Any]] = {}
    keys = sorted({k for stages in per_run for k in stages if k.endswith("_s")})
    for key in keys:
        values = [stages[key] for stages in per_run if key in stages]
        parts[key[:-2]] = {"seconds": float(np.median(values)), "runs_s": values}
    tiles = [s["tiles"] for s in per_run if "tiles" in s]
    if tiles and "sliding_window" in parts:
        parts["sliding_window"]["tiles"] = tiles[-1]
    return parts


def run_peers(ct: Path, work: Path, shape: Sequence[int] = (), repeats: int = 2,
              cells: Sequence[tuple[str, bool]] = (("fast", True), ("fast", False),
                                                   ("fastest", True)),
              timeout_s: float = 1800.0, quick: bool = False) -> list[Record]:
    """The peer rows of a whole-CT run: --fast --ml, --fast (one file per class), --fastest
    --ml, each ``repeats`` times, on the NIfTI file ``ct``, sharing one planted home."""
    return [run_peer(ct, mode, ml, work, repeats=repeats, timeout_s=timeout_s, shape=shape,
                     quick=quick) for mode, ml in cells]


# --------------------------------------------------------------------------------------------
# Faithfulness of the project's own pipeline to the tool


def faithfulness(own_network_s: float, own_pipeline_s: float, peer: Record) -> dict[str, Any]:
    """The project's own eager --fast pipeline set against the tool, measured in one run.

    ``own_network_s``: the seconds of the own loop's network passes over the whole CT (all
    tiles); ``own_pipeline_s``: its whole pipeline, HU volume in, labels out. Ratios are own /
    tool, so 0.5 means the re-implementation takes half the tool's time; the record says where
    the two differ by more than 20 %.
    """
    if not peer.ok or not peer.timing:
        return {"status": peer.status, "reason": peer.reason or "no timing"}
    window = peer.parts.get("sliding_window", {}).get("seconds")
    predict = peer.parts.get("predict", {}).get("seconds")
    whole = peer.timing["median_s"]
    out: dict[str, Any] = {"status": "ok", "peer": peer.key, "tool_whole_s": whole,
                           "tool_sliding_window_s": window, "tool_predict_s": predict,
                           "own_network_s": own_network_s, "own_pipeline_s": own_pipeline_s,
                           "network_ratio": own_network_s / window if window else None,
                           "pipeline_ratio": own_pipeline_s / whole if whole else None}
    out["outside_network_share"] = (whole - window) / whole if window and whole else None
    out["differs"] = [name for name in ("network_ratio", "pipeline_ratio")
                      if out[name] is not None and abs(out[name] - 1.0) > 0.20]
    return out

