"""Regenerate the README's result tables from results/ (the only way numbers reach it).

    uv run benchmarks/report.py           rewrite every <!-- results:NAME --> section
    uv run benchmarks/report.py --check   exit 1 if any section differs from results/
    uv run benchmarks/report.py --compare A.json B.json   one benchmark, two machines or runs
    uv run benchmarks/report.py --csv DIR   one flat CSV per benchmark and machine, into DIR
"""

import argparse
import sys
from pathlib import Path

from segbench import readme, report
from segbench.results import ResultsError, atomic_writer, load

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README is stale")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                        help="print the cells two results files share, with B/A ratios")
    parser.add_argument("--csv", type=Path, metavar="DIR",
                        help="write DIR/<benchmark>/<machine>.csv (one row per record), exit")
    args = parser.parse_args(argv)
    if args.csv:
        from segbench import flat

        try:
            for path in flat.export_all(args.results, args.csv):
                print(f"report: wrote {path}")
        except (OSError, ResultsError) as exc:
            print(f"report: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.compare:
        try:
            a, b = (load(path) for path in args.compare)
            print(report.compare_table(a, b))
        except (ResultsError, ValueError) as exc:
            print(f"report: error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        old = args.readme.read_text()
        benchmarks = readme.discover(ROOT / "benchmarks")
        new = readme.regenerate(old, benchmarks, args.results)
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
    for path in readme.draw_plots(benchmarks, args.results):
        print(f"report: drew {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if new != old:
        with atomic_writer(args.readme) as handle:
            handle.write(new)
        print(f"report: rewrote {args.readme}")
    else:
        print(f"report: {args.readme} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
