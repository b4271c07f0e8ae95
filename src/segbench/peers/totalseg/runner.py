"""The peer's run loop (plant if needed, launch, time with ``measure``, one record per row with
its stages, memory and network attempts) and the faithfulness maths that sets the project's own
--fast pipeline against the tool."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segbench import fields, measure
from segbench.peers.totalseg.install import label, require_installed, versions
from segbench.peers.totalseg.launch import NETWORK_LOG, command, environment, tool_args
from segbench.peers.totalseg.planting import PLANTED, WEIGHTS_NOTE, plant_home
from segbench.peers.totalseg.stagelog import STAGES, parse_stages, stage_medians
from segbench.peers.totalseg.watch import CommandRun, run_command
from segbench.results import Record


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
        record.extra[fields.PLANTED] = (json.loads((home / PLANTED).read_text())
                                   if (home / PLANTED).exists() else {})
        if mode not in record.extra[fields.PLANTED]:
            record.extra[fields.PLANTED].update(plant_home(home, modes=(mode,)))
            (home / PLANTED).write_text(json.dumps(record.extra[fields.PLANTED], indent=2))
        planted = record.extra[fields.PLANTED][mode]
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
    record.extra[fields.RUNS] = runs_meta
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
    stages = stage_medians([m["stages"] for m in runs_meta])
    # what the stage lines do not cover: interpreter start and imports, the tool's set-up,
    # reading the CT, undoing the canonical orientation, process exits
    other = [s - sum(m["stages"].get(k, 0.0) for k in STAGES)
             for s, m in zip(runs.seconds, runs_meta)]
    stages["outside_stages"] = {"seconds": float(np.median(other)), "runs_s": other}
    record.extra[fields.TOOL_STAGES] = stages
    return record


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
    stages = peer.extra.get(fields.TOOL_STAGES) or {}
    window = stages.get("sliding_window", {}).get("seconds")
    predict = stages.get("predict", {}).get("seconds")
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
