"""The tool's own stage lines: stage seconds and the sliding window's tiles parsed from its
console output, and their medians over runs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

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


def stage_medians(per_run: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median of each stage over the runs, with every run's value (a peer record's
    ``extra["tool_stages"]``)."""
    out: dict[str, dict[str, Any]] = {}
    keys = sorted({k for stages in per_run for k in stages if k.endswith("_s")})
    for key in keys:
        values = [stages[key] for stages in per_run if key in stages]
        out[key[:-2]] = {"seconds": float(np.median(values)), "runs_s": values}
    tiles = [s["tiles"] for s in per_run if "tiles" in s]
    if tiles and "sliding_window" in out:
        out["sliding_window"]["tiles"] = tiles[-1]
    return out
