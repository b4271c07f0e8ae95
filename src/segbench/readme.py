"""The README's generated sections: markers, which results file each section shows, plots.

README tables live between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->`` and
are only ever written here. results/ may hold several machines' files for a benchmark; a
section shows one machine's (the newest full run, or the slug named in
``results/readme-machine.txt``), says in words which CPU that is, and lists the other machines
with the command that compares them. This module sits on top of the reporting layers
(report, analysis, summary, plots) and nothing below imports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from segbench.analysis import newest_date
from segbench.machine import describe
from segbench.results import ResultsFile, full_results_files, load

SUMMARY = "summary"  # the README section of recommendations written from all results
MACHINES = "machines"  # the README section naming the machines whose results are committed
SETTING = "readme-machine.txt"  # optional: the machine slug the README shows
NO_RESULTS = "_No full run committed yet: run the benchmark, then `uv run benchmarks/report.py`._"
_SECTION = "<!-- results:{name} -->"
_END = "<!-- /results:{name} -->"


def replace_section(text: str, name: str, body: str) -> str:
    """Put ``body`` between the markers of ``name``; KeyError if the markers are missing."""
    start, end = _SECTION.format(name=name), _END.format(name=name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise KeyError(f"README has no {start} ... {end} section")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text, count=1)


def section_names(text: str) -> list[str]:
    return re.findall(r"<!-- results:([\w.-]+) -->", text)


def chosen_slug(results_dir: Path) -> str | None:
    """The machine the committed setting names, if there is one."""
    setting = Path(results_dir) / SETTING
    if setting.exists():
        return setting.read_text().strip() or None
    return None


def pick(files: list[ResultsFile], slug: str | None = None) -> ResultsFile | None:
    """The file the README shows: the named machine's, else the newest full run's."""
    if not files:
        return None
    if slug:
        named = [f for f in files if f.path is not None and f.path.stem == slug]
        if named:
            return named[0]
    return max(files, key=lambda f: newest_date(f.records))


def machine_slug(benchmarks: dict[str, Any], results_dir: Path) -> str | None:
    """The one machine whose results feed the recommendations and the cross-benchmark plots:
    the committed setting, else the machine of the newest full run of any benchmark."""
    named = chosen_slug(results_dir)
    if named:
        return named
    files = [f for name in benchmarks for f in load_all(results_dir, name)]
    newest = pick(files)
    return newest.path.stem if newest is not None and newest.path is not None else None


def load_all(results_dir: Path, benchmark: str) -> list[ResultsFile]:
    return [load(path, benchmark) for path in full_results_files(results_dir, benchmark)]


def others_note(shown: ResultsFile, files: list[ResultsFile]) -> str:
    """The other machines of a benchmark, each with the command that sets it beside the shown
    one (only cells both ran are compared)."""
    lines = []
    for other in files:
        if other is shown or other.path is None or shown.path is None:
            continue
        a, b = (f"results/{shown.benchmark}/{f.path.name}" for f in (shown, other))
        lines.append(f"- {describe(other.machine)} ({len(other.records)} rows): "
                     f"`uv run benchmarks/report.py --compare {a} {b}`")
    if not lines:
        return ""
    return "Results of other machines for this benchmark:\n\n" + "\n".join(lines)


def render_section(bench: Any, results_dir: Path) -> str:
    files = load_all(results_dir, bench.name)
    shown = pick(files, chosen_slug(results_dir))
    if shown is None:
        return NO_RESULTS
    note = others_note(shown, files)
    return bench.render(shown) + (f"\n{note}\n" if note else "")


def machines_section(benchmarks: dict[str, Any], results_dir: Path) -> str:
    """Which CPUs the committed results come from, in words, from their machine blocks."""
    seen: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name in benchmarks:
        for f in load_all(results_dir, name):
            slug = f.path.stem if f.path else f.machine.get("slug", "?")
            seen.setdefault(slug, (f.machine, []))[1].append(name)
    if not seen:
        return NO_RESULTS
    lines = []
    for slug, (block, names) in seen.items():
        isa = ", ".join(k for k, v in block.get("isa", {}).items() if v) or "none reported"
        lines.append(f"- `{slug}`: {describe(block)}, {block.get('memory_gib', '?')} GiB; "
                     f"{isa}. Benchmarks: {', '.join(names)}.")
    return "\n".join(lines)


def regenerate(readme: str, benchmarks: dict[str, Any], results_dir: Path) -> str:
    """README text with every results section rendered from ``results_dir``."""
    for name in section_names(readme):
        if name in benchmarks:
            readme = replace_section(readme, name, render_section(benchmarks[name], results_dir))
        elif name == SUMMARY:
            from segbench import summary

            slug = machine_slug(benchmarks, results_dir)
            readme = replace_section(readme, name, summary.render(results_dir, slug))
        elif name == MACHINES:
            readme = replace_section(readme, name, machines_section(benchmarks, results_dir))
    return readme


def discover(benchmarks_dir: Path) -> dict[str, Any]:
    from segbench.bench import load_script

    found = {}
    for script in sorted(Path(benchmarks_dir).glob("*/benchmark.py")):
        bench = load_script(script)
        found[bench.name] = bench
    return found


def draw_plots(benchmarks: dict[str, Any], results_dir: Path) -> list[Path]:
    """Every plot the README shows, into results/plots/: the 2D trade-offs over the records of
    the benchmarks that feed them (``Benchmark.tradeoff``) on one machine (the newest run of
    those benchmarks), then whatever a benchmark draws of the file its table shows (its
    ``plots`` hook). No figure mixes two machines."""
    from segbench import plots

    out = Path(results_dir) / "plots"
    sources = {name: b for name, b in benchmarks.items() if b.tradeoff}
    slug = machine_slug(sources, results_dir)
    files = [f for name in sources for f in load_all(results_dir, name)
             if f.path is not None and f.path.stem == slug]
    records = [r for f in files for r in f.records]
    machine = describe(files[0].machine) if files else ""
    drawn = [plots.tradeoff_plot(records, "params", out / "tradeoff_params.png",
                                 machine=machine),
             plots.tradeoff_plot(records, "gflops", out / "tradeoff_gflops.png",
                                 machine=machine)]
    shown = {name: pick(load_all(results_dir, name), chosen_slug(results_dir))
             for name in benchmarks}
    for name, bench in benchmarks.items():
        if bench.plots and shown[name] is not None:
            drawn += bench.plots(shown[name], out)
    return [p for p in drawn if p is not None]

