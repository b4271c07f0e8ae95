"""Regenerate the README and the results pages from results/ (the only way numbers reach them).

    uv run benchmarks/report.py           rewrite every <!-- results:NAME --> section of the
                                          README and of docs/results/<benchmark>.md (one page
                                          per benchmark with a full run, made if missing)
    uv run benchmarks/report.py --check   exit 1 if any section or page differs from results/
    uv run benchmarks/report.py --compare A.json B.json   one benchmark, two machines or runs
    uv run benchmarks/report.py --csv DIR   one flat CSV per benchmark and machine, into DIR
"""

import argparse
import sys
from pathlib import Path

from segbench import readme, tables
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
            print(tables.compare_table(a, b))
        except (ResultsError, ValueError) as exc:
            print(f"report: error: {exc}", file=sys.stderr)
            return 2
        return 0
    root = args.readme.resolve().parent  # the repository the pages and docs/ belong to
    try:
        old = args.readme.read_text()
        benchmarks = readme.discover(ROOT / "benchmarks")
        texts = {args.readme: (old, readme.regenerate(old, benchmarks, args.results, root))}
        texts.update(readme.pages(root, benchmarks, args.results))
    except (OSError, ResultsError, KeyError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, (before, after) in texts.items() if before != after]
    if args.check:
        for path in stale:
            what = "is missing" if texts[path][0] is None else "is stale: its tables differ"
            print(f"report: {path} {what} from {args.results}; run `uv run "
                  "benchmarks/report.py`", file=sys.stderr)
        if stale:
            return 1
        print(f"report: {args.readme} and {len(texts) - 1} results page(s) match {args.results}")
        return 0
    for path in readme.draw_plots(benchmarks, args.results):
        print(f"report: drew {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path) as handle:
            handle.write(texts[path][1])
        print(f"report: {'wrote' if texts[path][0] is None else 'rewrote'} {path}")
    if not stale:
        print(f"report: {args.readme} and {len(texts) - 1} results page(s) already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
