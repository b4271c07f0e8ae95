"""Run every benchmark in sequence, then regenerate the README tables and plots.

    uv run benchmarks/run_all.py             full runs (hours on 2 cores)
    uv run benchmarks/run_all.py --quick     a smoke run of everything (a few minutes)
    uv run benchmarks/run_all.py --only encoder_only,fpn_decoder

Each benchmark runs as its own process, so one that fails does not stop the others; its
per-cell progress lines pass through to stderr. A full run starts each one fresh, exactly as a
user would (`python benchmarks/<name>/benchmark.py`): its numbers come from a process that
nothing else ran in. The quick smoke run trades that for speed: torch, timm and the shared
segbench modules (PRELOAD) are imported once here, ~15 s that each benchmark would otherwise
pay again, and each benchmark is forked from this process and run as `__main__` with the same
command line (segbench.forkrun; why the fork is safe after importing torch is said there).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from segbench import forkrun, stop

ROOT = Path(__file__).resolve().parents[1]
# cheapest first, so a quick look at early results is possible while the rest runs
# champion_3d after champion: it times the 2D champion's recipe beside the 3D search; this_cpu
# last: it picks its pipelines from the champion and whole_ct runs and quotes quality from
# whole_ct and real_ct
ORDER = ["encoder_only", "fpn_decoder", "unet_decoder", "combined", "quantization", "2d_vs_3d",
         "fidelity", "scaling", "champion", "whole_ct", "champion_3d", "real_ct", "this_cpu"]
# benchmarks that time the real TotalSegmentator beside their own rows with --peers
PEERS = ("whole_ct", "champion_3d")
# benchmarks that need data a full run cannot invent (their --quick uses a stand-in)
NEEDS_DATA = {"real_ct": ("--dataset", "--observers")}
# benchmarks of the user's own network: nothing to run without it, quick or full
OWN_NETWORK = {"own_model": "uv run --group peers benchmarks/own_model/benchmark.py "
                            "--nnunet-model DIR --input CT"}
# --quick: imported once, before the benchmarks are forked (what every script's run imports)
PRELOAD = ("torch", "timm", "segbench.bench", "segbench.models", "segbench.runtimes",
           "segbench.pipelines.scenario", "segbench.benchmarks.whole_ct.plan",
           "segbench.views.registry")
# read once when torch loads libgomp, so set before PRELOAD: real_ct's script sets it for its
# CPU-time training budget, and the forked children share this process's libgomp
PRELOAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def available() -> list[str]:
    present = {p.parent.name for p in ROOT.glob("benchmarks/*/benchmark.py")}
    return [name for name in ORDER if name in present] + sorted(present - set(ORDER))


def run_benchmark(cmd: list[str]) -> int:
    """One benchmark as its own process. A stop signal sent to run_all alone (a scheduler's
    SIGTERM) is passed on to it, and run_all waits while it ends its cell and saves."""
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt as exc:
        proc.send_signal(getattr(exc, "signum", signal.SIGINT))  # a repeat is ignored there
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--only", help="comma list of benchmarks (default: all)")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite README")
    parser.add_argument("--dataset", help="real_ct: labelled CTs in nnU-Net v2 raw layout")
    parser.add_argument("--observers", help="real_ct: masks of two annotators")
    parser.add_argument("--peers", action="store_true",
                        help=f"{', '.join(PEERS)}: the real TotalSegmentator beside them "
                             "(needs 'uv sync --group peers')")
    args = parser.parse_args(argv)
    names = available()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print(f"run_all: error: unknown benchmark {', '.join(unknown)}; valid: "
                  f"{', '.join(names)}", file=sys.stderr)
            return 2
        names = wanted
    failed, skipped = [], []
    start = time.monotonic()
    if args.quick:
        for key, value in PRELOAD_ENV.items():
            os.environ.setdefault(key, value)
        try:
            with stop.on_signals():
                forkrun.preload(PRELOAD)
        except KeyboardInterrupt as exc:
            print(f"\nrun_all: stopped by {exc} before any benchmark ran", file=sys.stderr)
            return stop.exit_code(exc)
    for i, name in enumerate(names, 1):
        print(f"\n=== [{i}/{len(names)}] {name} ({time.monotonic() - start:.0f} s elapsed) ===",
              file=sys.stderr, flush=True)
        if name in OWN_NETWORK:
            print(f"run_all: {name} skipped: it runs your own network ({OWN_NETWORK[name]})",
                  file=sys.stderr)
            skipped.append(name)
            continue
        cmd = [sys.executable, str(ROOT / "benchmarks" / name / "benchmark.py")]
        if args.quick:
            cmd.append("--quick")
        data = [(flag, getattr(args, flag[2:])) for flag in NEEDS_DATA.get(name, ())]
        data = [(flag, value) for flag, value in data if value]
        if name in NEEDS_DATA and not data and not args.quick:
            print(f"run_all: {name} skipped: it needs {' and/or '.join(NEEDS_DATA[name])} "
                  "(give them to run_all)", file=sys.stderr)
            skipped.append(name)
            continue
        for flag, value in data:
            cmd += [flag, value]
        if args.peers and name in PEERS:
            cmd.append("--peers")
        try:
            with stop.on_signals():
                code = forkrun.run(cmd[1:], ROOT) if args.quick else run_benchmark(cmd)
        except KeyboardInterrupt as exc:
            print(f"\nrun_all: stopped by {exc}: {name} kept its finished cells in its results "
                  "file; the benchmarks after it did not run", file=sys.stderr)
            return stop.exit_code(exc)
        if code != 0:
            failed.append(name)
    if not args.no_report and not args.quick:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py")], cwd=ROOT)
    done = len(names) - len(failed) - len(skipped)
    print(f"\nrun_all: {done}/{len(names)} benchmarks completed in "
          f"{time.monotonic() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; skipped (no data or network given): {', '.join(skipped)}" if skipped else ""),
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
