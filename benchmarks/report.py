"""Regenerate the README's result tables from results/ (the only way numbers reach it).

    uv run benchmarks/report.py           rewrite every <!-- results:NAME --> section
    uv run benchmarks/report.py --check   exit 1 if any section differs from results/
"""

import argparse
import sys
from pathlib import Path

from segbench import report
from segbench.results import ResultsError, atomic_writer

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README is stale")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    try:
        old = args.readme.read_text()
        new = report.regenerate(old, report.discover(ROOT / "benchmarks"), args.results)
    except (OSError, ResultsError, KeyError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            print(f"report: {args.readme} is stale: its tables differ from {args.results}; "
                  "run `uv run benchmarks/report.py`", file=sys.stderr)
            return 1
        print(f"report: {args.readme} matches {args.results}")
        return 0
    if new != old:
        with atomic_writer(args.readme) as handle:
            handle.write(new)
        print(f"report: rewrote {args.readme}")
    else:
        print(f"report: {args.readme} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
