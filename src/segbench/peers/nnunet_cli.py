"""The commands users run today on a model folder and a cohort, as own_model's extra rows:

- ``nnUNetv2_predict_from_modelfolder -i IN -o OUT -m MODEL -f FOLD -device cpu`` as nnU-Net
  ships it (its default worker processes, its default step and mirroring), on the run's first
  CT, its labels scored against nnUNetPredictor's (the same code, so they should agree); and on
  the whole cohort folder in one call (nnU-Net's own way to run many CTs: workers preprocess
  and export beside the network);
- with ``--peers``, the real TotalSegmentator --fast --ml once per CT of the cohort (how its
  users run hundreds of scans; planted random weights, see ``peers.totalseg.planting``).

Each command runs in its own session under ``peers.totalseg.watch`` (process-tree memory, a
stop kills the whole tree) and is timed by ``measure.time_whole_runs``; no clock here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from segbench import measure
from segbench.results import Record

COMMAND = "nnUNetv2_predict_from_modelfolder"


def executable() -> str:
    found = shutil.which(COMMAND) or str(Path(sys.executable).parent / COMMAND)
    if not Path(found).exists():
        raise FileNotFoundError(f"{COMMAND} not found (uv sync --group peers)")
    return found


def case_folder(files: Sequence[str], work: Path) -> Path:
    """A folder of links named as nnU-Net's raw layout wants (``<case>_0000.nii.gz``)."""
    folder = work / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
        (folder / f"ct{i:04d}_0000{suffix}").symlink_to(Path(path).resolve())
    return folder


def command(folder: Path, out: Path, model: Any, step: float, mirror: bool) -> list[str]:
    cmd = [executable(), "-i", str(folder), "-o", str(out), "-m", str(model.path),
           "-f", str(model.fold), "-chk", model.checkpoint.name, "-device", "cpu",
           "-step_size", f"{step:g}", "--disable_progress_bar"]
    return cmd + ([] if mirror else ["--disable_tta"])


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env["TMPDIR"] = str(tmp)
    return env


def nnunet_record(bench: str, key: str, model: Any, files: Sequence[str], step: float,
                  mirror: bool, repeats: int, quick: bool, reference: np.ndarray | None,
                  timeout_s: float = 3600.0) -> Record:
    """Time the command on ``files`` (one folder, one call) ``repeats`` times."""
    from segbench.peers.totalseg.watch import run_command
    from segbench.pipelines.scan import read_nifti

    record = Record(benchmark=bench, key=key, model=model.name, runtime="as-shipped",
                    shape=[], batch=1, threads=os.cpu_count() or 1, family="peer",
                    weights="the model folder's checkpoint", quick=quick,
                    extra={"method": "command", "peer": "nnU-Net",
                           "display": f"{COMMAND} (nnU-Net as shipped, -device cpu)",
                           "cts": len(files), "nnunet_model": model.describe()})
    try:
        with tempfile.TemporaryDirectory(prefix="segbench-nnunet-") as tmp:
            work = Path(tmp)
            folder = case_folder(files, work)
            results = []

            def one(i: int) -> Any:
                out = work / f"out-{i}"
                cmd = command(folder, out, model, step, mirror)
                record.runtime_info["command"] = " ".join([COMMAND, *cmd[1:]])
                run = run_command(cmd, _env(work), work / f"log-{i}.txt", out, timeout_s)
                results.append((run, out))
                return run

            runs = measure.WholeRuns(seconds=[])
            for i in range(repeats):
                single = measure.time_whole_runs(lambda _i, i=i: one(i), repeats=1)
                runs.seconds += single.seconds
                if single.results[0].returncode != 0:
                    break
            last, out = results[-1]
            record.memory = {"peak_rss_tree_mb": max(r.peak_rss_tree_mb for r, _ in results),
                             "peak_pss_tree_mb": max(r.peak_pss_tree_mb for r, _ in results)}
            record.runtime_info.update(max_processes=max(r.max_processes for r, _ in results),
                                       max_threads=max(r.max_threads for r, _ in results))
            if last.returncode is None:
                record.status, record.reason = "timeout", f"no result within {timeout_s:.0f} s"
                return record
            if last.returncode != 0:
                tail = [ln for ln in last.log.splitlines() if ln.strip()][-1:] or ["no output"]
                record.status = "failed"
                record.reason = f"exit {last.returncode}: {tail[0][:160]}"
                return record
            timing = runs.to_dict()
            timing["throughput"] = len(files) / timing["median_s"]  # CTs per second
            record.timing = timing
            record.extra["cts_per_hour"] = 3600.0 * timing["throughput"]
            if reference is not None and len(files) == 1:
                from segbench import quality
                from segbench.pipelines.scenario import agreement

                labels = read_nifti(next(out.glob("ct0000.nii*"))).hu.astype(np.uint8)
                if labels.shape == reference.shape:
                    record.extra["dice_vs_eager"] = quality.foreground_mean_dice(reference,
                                                                                 labels)
                    record.extra["agreement_vs_eager"] = agreement(reference, labels)
    except Exception as exc:  # noqa: BLE001 - a command that cannot run is a row with its reason
        record.status, record.reason = "failed", f"{type(exc).__name__}: {exc}"[:200]
    return record


def totalseg_cohort_record(bench: str, files: Sequence[str], quick: bool) -> Record:
    """The real TotalSegmentator --fast --ml once per CT (one command per file), summed."""
    from segbench.peers.totalseg import runner

    record = Record(benchmark=bench, key="command:totalsegmentator:fast:ml:cohort",
                    model="totalsegmentator-fast-ml", runtime="as-shipped", shape=[], batch=1,
                    threads=os.cpu_count() or 1, family="peer", weights="random-planted",
                    quick=quick, extra={"method": "command-cohort", "peer": "TotalSegmentator",
                                        "display": "TotalSegmentator --fast --ml, one command "
                                                   "per CT", "cts": len(files)})
    per_ct: list[float] = []
    with tempfile.TemporaryDirectory(prefix="segbench-totalseg-") as tmp:
        for i, path in enumerate(files, 1):
            print(f"  [TotalSegmentator {i}/{len(files)}] {Path(path).name} ...",
                  file=sys.stderr, flush=True)
            one = runner.run_peer(Path(path), "fast", True, Path(tmp), repeats=1, quick=quick,
                                  benchmark=bench)
            if not one.ok or not one.timing:
                record.status, record.reason = one.status, f"{Path(path).name}: {one.reason}"
                return record
            per_ct.append(float(one.timing["median_s"]))
            record.memory["peak_rss_tree_mb"] = max(record.memory.get("peak_rss_tree_mb", 0.0),
                                                    one.memory.get("peak_rss_tree_mb", 0.0))
            record.packages = one.packages
    total = sum(per_ct)
    record.timing = {"median_s": total, "runs_s": [total], "repeats": 1,
                     "throughput": len(files) / total}
    record.extra.update(per_ct_s=per_ct, median_ct_s=float(np.median(per_ct)),
                        p90_ct_s=float(np.percentile(per_ct, 90)), cohort_s=total,
                        cts_per_hour=3600.0 * len(files) / total, cohort=True)
    return record


def rows(bench: Any, opts: Any, results: Any) -> Iterator[Record]:
    """own_model's extra rows: the nnU-Net command on the first CT and on the cohort, and with
    --peers the real TotalSegmentator once per CT."""
    from segbench.benchmarks.own_model import plan
    from segbench.peers.whole_ct import stamp
    from segbench.pipelines.scenario import load_reference

    if opts.extra.get("no_commands") or not opts.extra.get("nnunet_model"):
        return
    model = plan.model_folder(opts)
    files = plan.cohort_files(opts)
    s = plan.settings(opts)
    ref_key = plan.reference_key(model, {"kind": "nifti", "path": files[0]}, s["mirror"],
                                 s["step"])
    repeats = 1 if opts.quick else 2
    jobs = [("command:nnunet:one", files[:1], repeats)]
    if len(files) > 1:
        jobs.append(("command:nnunet:cohort", files, 1))
    for key, chosen, n in jobs:
        print(f"[command] {COMMAND} on {len(chosen)} CT(s) x{n} ...", file=sys.stderr,
              flush=True)
        record = nnunet_record(bench.name, key, model, chosen, s["step"], s["mirror"], n,
                               opts.quick, load_reference(ref_key) if len(chosen) == 1 else None)
        if len(chosen) > 1 and record.ok:
            record.extra["cohort"] = True
        stamp(record)
        yield record
    if opts.extra.get("peers") and len(files) > 1:
        record = totalseg_cohort_record(bench.name, files, opts.quick)
        stamp(record)
        yield record
