"""The README's and the results pages' generated sections: markers, which results file each
section shows, the pages themselves, plots.

Tables live between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->`` and are only
ever written here. The README holds the answer, the recommendations and lists; every benchmark
with a full run gets its own page, ``docs/results/<name>.md``, holding its full tables (made
from a skeleton the first time; text outside the markers is kept, as in the README).

results/ may hold several machines' files for a benchmark; a section shows one machine's (the
newest full run, or the slug named in ``results/readme-machine.txt``), says in words which CPU
that is, and lists the other machines with the command that compares them. This module sits on
top of the reporting layers (tables, analysis, summary, plots, views) and nothing below
imports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from segbench.analysis import newest_date
from segbench.machine import describe
from segbench.results import ResultsFile, full_results_files, load
from segbench.tables import DASH, wrap_markdown, wrap_prose

SUMMARY = "summary"  # the README section of recommendations written from all results
ANSWER = "answer"  # the README's first table: seconds per whole CT of the pipelines that matter
MACHINES = "machines"  # the README section naming the machines whose results are committed
PAGES = "pages"  # the README's list of results pages, with what each benchmark costs
DOCS = "docs"  # the README's list of the pages in docs/
BRIEF = ".brief"  # "<benchmark>.brief": that benchmark's short README form (View.brief)
PAGES_DIR = Path("docs") / "results"  # one generated page per benchmark with a full run
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
    return wrap_markdown(bench.render(shown) + (f"\n{note}\n" if note else ""))


def brief_section(bench: Any, results_dir: Path) -> str:
    """A benchmark's short README form (its view's ``brief``) from the file its page shows."""
    files = load_all(results_dir, bench.name)
    shown = pick(files, chosen_slug(results_dir))
    brief = getattr(bench, "brief", None) or getattr(getattr(bench, "view", None), "brief", None)
    if shown is None or brief is None:
        return NO_RESULTS
    return wrap_markdown(brief(shown))


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
        lines.append(wrap_prose(
            f"- `{slug}`: {describe(block)}, {block.get('memory_gib', '?')} GiB; {isa}. "
            f"Benchmarks: {', '.join(names)}."))
    return "\n".join(lines)


def paged(benchmarks: dict[str, Any], results_dir: Path) -> list[str]:
    """The benchmarks that get a results page: every one with a full results file."""
    return [name for name in benchmarks if full_results_files(results_dir, name)]


def page_path(root: Path, name: str) -> Path:
    return Path(root) / PAGES_DIR / f"{name}.md"


def page_skeleton(bench: Any) -> str:
    """A new benchmark's page before anyone has written about it: its title, its command and
    its tables."""
    return (f"# {bench.title}\n\n`uv run benchmarks/{bench.name}/benchmark.py` (add `--dry-run` "
            "to see its cells and an estimated duration).\nThe tables are written by "
            f"`uv run benchmarks/report.py` from `results/{bench.name}/`; text outside the "
            "markers is kept.\n\n"
            f"{_SECTION.format(name=bench.name)}\n{_END.format(name=bench.name)}\n")


def pages(root: Path, benchmarks: dict[str, Any], results_dir: Path
          ) -> dict[Path, tuple[str | None, str]]:
    """Every results page as (text on disk or None, text it should have)."""
    out = {}
    for name in paged(benchmarks, results_dir):
        path = page_path(root, name)
        old = path.read_text() if path.exists() else None
        text = page_skeleton(benchmarks[name]) if old is None else old
        if name not in section_names(text):
            raise KeyError(f"{path} has no {_SECTION.format(name=name)} ... "
                           f"{_END.format(name=name)} section")
        out[path] = (old, regenerate(text, benchmarks, results_dir, root))
    return out


# family -> the family trained to give it weights (models' ``trained_through``, e.g. an encoder
# is trained inside its FPN); read here without importing the models (tests/test_views.py
# checks it against them)
TRAINED_THROUGH = {"encoder": "fpn"}
WEIGHT_OPTIONS = ("train", "recipe")  # record options that choose trained weights (weights.py)


def trained_networks(records: list[Any]) -> int:
    """How many distinct networks a run trained before its cells (cached in cache/): same
    trained family, name, classes and recipe (weights.distinct, from the records alone)."""
    import json

    seen = set()
    for r in records:
        options = r.options or {}
        if any(options.get(k) for k in WEIGHT_OPTIONS):
            recipe = {k: options[k] for k in WEIGHT_OPTIONS if k in options}
            seen.add(json.dumps([TRAINED_THROUGH.get(r.family, r.family), r.name or r.model,
                                 r.classes, recipe], sort_keys=True, default=str))
    return len(seen)


def minutes(seconds: float) -> str:
    return "< 1" if seconds < 60 else f"{seconds / 60:.0f}"


def pages_section(benchmarks: dict[str, Any], results_dir: Path) -> str:
    """One row per results page: what the benchmark answers and what its shown run cost, from
    the cells' elapsed times in the results file (the same numbers ``--dry-run`` estimates
    from); training before the first cell is not recorded, only how many networks."""
    from tabulate import tabulate

    rows, total = [], 0.0
    for name in paged(benchmarks, results_dir):
        shown = pick(load_all(results_dir, name), chosen_slug(results_dir))
        if shown is None:
            continue
        elapsed = [r.elapsed_s for r in shown.records if r.elapsed_s]
        total += sum(elapsed)
        cores = shown.machine.get("physical_cores", "?")
        recorded = (f"{len(shown.records)}" if len(elapsed) == len(shown.records)
                    else f"{len(shown.records)} ({len(elapsed)} with a recorded time)")
        trained = trained_networks(shown.records)
        rows.append([f"[{name}]({PAGES_DIR.as_posix()}/{name}.md)", benchmarks[name].title,
                     recorded,
                     f"{minutes(sum(elapsed))} on {cores} cores" if elapsed else "not recorded",
                     str(trained) if trained else DASH])
    if not rows:
        return NO_RESULTS
    table = tabulate(rows, headers=["results page", "what it measures", "cells",
                                    "minutes of cells", "networks trained first"],
                     tablefmt="github", disable_numparse=True)
    return (f"{table}\n\nAll of them: {minutes(total)} minutes of cells, plus the training of "
            "networks not yet in `cache/`\n(its time is not recorded in results/).")


def docs_section(root: Path) -> str:
    """A link to every page in docs/ (the results pages are listed apart), by its title."""
    lines = []
    for page in sorted((Path(root) / "docs").glob("*.md")):
        first = next((ln for ln in page.read_text().splitlines() if ln.startswith("# ")), "")
        title = first[2:].strip() or page.stem
        lines.append(f"- [{title}](docs/{page.name})")
    return "\n".join(lines) or "_No pages in docs/ yet._"


def regenerate(readme: str, benchmarks: dict[str, Any], results_dir: Path,
               root: Path | None = None) -> str:
    """README (or results page) text with every results section rendered from
    ``results_dir``; ``root`` is the repository the lists of pages are made from (default: the
    folder above ``results_dir``)."""
    root = Path(results_dir).parent if root is None else Path(root)
    for name in section_names(readme):
        if name in benchmarks:
            readme = replace_section(readme, name, render_section(benchmarks[name], results_dir))
        elif name.endswith(BRIEF) and name[:-len(BRIEF)] in benchmarks:
            readme = replace_section(readme, name, brief_section(benchmarks[name[:-len(BRIEF)]],
                                                                 results_dir))
        elif name in (SUMMARY, ANSWER):
            from segbench import summary

            # the machine of the newest run among the benchmarks this section reads
            feeds = summary.BENCHMARKS if name == SUMMARY else summary.ANSWER_BENCHMARKS
            slug = machine_slug({n: benchmarks.get(n) for n in feeds}, results_dir)
            render = summary.render if name == SUMMARY else summary.answer
            readme = replace_section(readme, name, render(results_dir, slug))
        elif name == MACHINES:
            readme = replace_section(readme, name, machines_section(benchmarks, results_dir))
        elif name == PAGES:
            readme = replace_section(readme, name, pages_section(benchmarks, results_dir))
        elif name == DOCS:
            readme = replace_section(readme, name, docs_section(root))
    return readme


def discover(benchmarks_dir: Path) -> dict[str, Any]:
    """The view of every benchmark that has a script in ``benchmarks_dir`` (by name, in the
    scripts' order), from the registry: no script is executed. KeyError for a script whose
    benchmark has no view registered."""
    from segbench.views.registry import VIEWS

    found = {}
    for script in sorted(Path(benchmarks_dir).glob("*/benchmark.py")):
        name = script.parent.name
        if name not in VIEWS:
            raise KeyError(f"{script} has no view in segbench/views/registry.py")
        found[name] = VIEWS[name]
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

