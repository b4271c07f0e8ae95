"""A benchmark = a matrix of cells + how to show its records. Scripts declare one and call main.

``main`` is the whole life of a run: validate the command line (mistakes exit 2 before any
work), run every cell in its own process, save the results file after each cell (an
interrupted run keeps what it finished), print the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from segbench import cli, fields, machine, progress, runtimes, stop, weights
from segbench.cell import Cell
from segbench.isolate import run_here, run_isolated
from segbench.measure import Protocol
from segbench.models import DEFAULT_CLASSES, ModelSpec, family, input_shape
from segbench.results import Record, ResultsError, ResultsFile, load_or_new, results_path, update
from segbench.tables import Column
from segbench.views import Plots, Tables, View

# what a benchmark shows, held by its View (segbench.views.registry) and copied from it
VIEW_FIELDS = ("name", "title", "columns", "sort_key", "tables", "plots", "tradeoff", "trained")


@dataclass
class Benchmark:
    """What a benchmark runs (its matrix) and, through ``view``, how its records are shown.

    A script passes ``view=VIEWS[name]``, the one home of its name, title, tables and plots
    (the README renders from the view without running the script); a benchmark declared
    without one (tests, a script not moved yet) gets a view made of its own fields."""

    name: str = ""
    title: str = ""
    families: Sequence[str] = ()  # model families this benchmark instantiates per model name
    models: Sequence[str] = ()
    quick_models: Sequence[str] = ()
    runtimes: Sequence[str] = ("compile-bf16",)
    quick_runtimes: Sequence[str] = ("eager",)
    size: int = 512
    quick_size: int = 256
    classes: int = DEFAULT_CLASSES
    submodules: tuple[str, ...] = ()  # timed alone too in every cell (Cell.submodules)
    # extra (family, models) rows of full runs, e.g. the smp library's decoders as a reference
    references: Sequence[tuple[str, Sequence[str]]] = ()
    columns: Sequence[Column] = ()
    sort_key: Callable[[Record], object] | None = None
    tables: Tables | None = None  # custom rendering; default one table from ``columns``
    cells: Callable[["Benchmark", cli.Options], list[Cell]] | None = None  # custom matrix
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    plots: Plots | None = None  # README figures
    valid_models: Sequence[str] = field(default=())
    tradeoff: bool = True  # its rows feed the README's speed-versus-size trade-off plots
    # cells chosen from the finished cells' records (e.g. re-time the winner with its
    # submodules alone); a follow-up cell with an earlier cell's key replaces that cell's record
    follow_up: Callable[["Benchmark", cli.Options, list[Record]], list[Cell]] | None = None
    # rows that are not cells (e.g. a whole command timed as a peer), made after the cells and
    # follow-ups from the run's results so far; each is saved into the results file as a
    # cell's record is (the one writer of the file), one with a saved key replacing it
    extra_rows: Callable[["Benchmark", cli.Options, ResultsFile], Iterable[Record]] | None = None
    # every network is trained on CT phantoms first (train.table_recipe) and fed phantom
    # slices, so quality columns come from trained weights; random weights otherwise
    trained: bool = False
    # models (of a trained benchmark) also timed once with random weights, same input and
    # runtime: the check that speed does not depend on the weights (report.weights_check_table)
    weights_check: Sequence[str] = ()
    view: View | None = None

    def __post_init__(self) -> None:
        if self.view is None:
            self.view = View(**{f: getattr(self, f) for f in VIEW_FIELDS})
        else:
            for f in VIEW_FIELDS:
                setattr(self, f, getattr(self.view, f))
        if not self.name:
            raise ValueError("a benchmark needs a name (or a view that has one)")
        if not self.valid_models:
            names = [set(family(f).names()) for f in self.families]
            self.valid_models = sorted(set.intersection(*names))

    # --- the matrix --------------------------------------------------------------------------
    def protocol(self, opts: cli.Options) -> Protocol:
        return Protocol.smoke(opts.repeats) if opts.quick else Protocol.full(opts.repeats)

    def cell(self, spec: ModelSpec, runtime: str, opts: cli.Options, **kw) -> Cell:
        """A cell of this benchmark with the run's shared options."""
        return Cell(benchmark=self.name, model=spec, runtime=runtime,
                    shape=input_shape(spec, opts.size, opts.batch), threads=opts.threads,
                    protocol=self.protocol(opts), submodules=self.submodules, **kw)

    def default_cells(self, opts: cli.Options) -> list[Cell]:
        pairs = [(name, fam) for name in opts.models for fam in self.families]
        if not opts.quick and opts.models == list(self.models):  # full default run only
            pairs += [(name, fam) for fam, names in self.references for name in names]
        cells = []
        for name, fam in pairs:
            for runtime in opts.runtimes:
                trained = self.model_cell(ModelSpec(fam, name, opts.classes), runtime, opts)
                if (self.trained and name in self.weights_check and fam == self.families[0]
                        and runtime == opts.runtimes[0]):  # bracketed by random-weight twins
                    spec = ModelSpec(fam, name, opts.classes)
                    cells += [self.random_weights_cell(spec, runtime, opts, "before"), trained,
                              self.random_weights_cell(spec, runtime, opts, "after")]
                else:
                    cells.append(trained)
        return cells

    def model_cell(self, spec: ModelSpec, runtime: str, opts: cli.Options) -> Cell:
        """A cell of one network under one runtime: with trained weights and phantom slices in
        a ``trained`` benchmark (Dice against the truth and against FP32 eager after timing,
        or for an encoder its features against FP32), random weights on noise otherwise."""
        if not self.trained:
            return self.cell(spec, runtime, opts)
        from segbench.train import table_recipe

        recipe = table_recipe(opts.quick, opts.size)
        spec.options["train"] = recipe
        scored = getattr(family(spec.family), "trained_through", None) is None
        scenario: dict = {"kind": "phantom_dice" if scored else "phantom_input"}
        if scored:
            scenario["n"] = 2 if opts.quick else 16
        if runtimes.get(runtime).precision == "int8":  # calibrated on phantoms
            scenario["calibration"] = 2 if opts.quick else 16
        return self.cell(spec, runtime, opts, scenario=scenario)

    def random_weights_cell(self, spec: ModelSpec, runtime: str, opts: cli.Options,
                            when: str) -> Cell:
        """The same network, input (a phantom slice of the trained cells' organs) and runtime
        as a trained cell, with random weights, timed just ``when`` ("before" or "after") it:
        a speed that differs beyond the twins' spread would mean the weights, not the network,
        are measured; two twins around the trained row keep drift from passing for that."""
        from segbench.train import table_recipe

        organs = table_recipe(opts.quick, opts.size)["organs"]
        tag = "random weights" if when == "after" else f"random weights, {when}"
        return self.cell(spec, runtime, opts,
                         scenario={"kind": "phantom_input", "organs": organs},
                         extra={"tag": tag, "weights_check": True})

    def make_cells(self, opts: cli.Options) -> list[Cell]:
        return self.cells(self, opts) if self.cells else self.default_cells(opts)

    # --- the report --------------------------------------------------------------------------
    def render(self, results: ResultsFile) -> str:
        """Markdown for a results file: its view's tables and provenance."""
        assert self.view is not None
        return self.view.render(results)

    # --- the command line --------------------------------------------------------------------
    def parse(self, argv: Sequence[str] | None) -> cli.Options:
        return cli.parse(argv, prog=f"benchmarks/{self.name}/benchmark.py",
                         description=self.title, models=self.models,
                         valid_models=self.valid_models, quick_models=self.quick_models,
                         runtime_defaults=self.runtimes, quick_runtimes=self.quick_runtimes,
                         size=self.size, quick_size=self.quick_size, families=self.families,
                         classes=self.classes,
                         add_arguments=self.add_arguments)

    def listing(self) -> str:
        lines = [f"models ({len(self.valid_models)}):"]
        lines += [f"  {name}" for name in self.valid_models]
        lines.append("runtimes:")
        for name in runtimes.names():
            try:
                rt = runtimes.get(name)
                why = rt.unavailable_reason()
                skipped = f"  (skipped here: {why})" if why else ""
                lines.append(f"  {name:<16} {rt.precision}{skipped}")
            except ImportError as exc:
                lines.append(f"  {name:<16} (not installed: {exc})")
        return "\n".join(lines)


def estimates(cells: Sequence[Cell], past: Sequence[Record]) -> list[float | None]:
    """Seconds each cell is expected to take, from earlier records of the same machine: the
    record of the same cell (key), else the mean of the same model under the same runtime;
    None where nothing comparable was run before."""
    by_key = {r.key: r.elapsed_s for r in past if r.elapsed_s}
    by_pair: dict[tuple[str, str], list[float]] = {}
    for r in past:
        if r.elapsed_s:
            by_pair.setdefault((r.model, r.runtime), []).append(r.elapsed_s)
    out: list[float | None] = []
    for cell in cells:
        pair = by_pair.get((cell.model.label, cell.runtime))
        out.append(by_key.get(cell.key) or (sum(pair) / len(pair) if pair else None))
    return out


def past_records(results: ResultsFile, path: Path) -> tuple[list[Record], Path]:
    """Records to estimate durations from, and the file they come from: this machine's file,
    else (for an estimate only, nothing is merged) another file of the same benchmark written
    on a CPU of the same name and core count, e.g. before the file naming changed."""
    if results.records or not path.parent.is_dir():
        return results.records, path
    from segbench.results import load

    same = ("cpu", "physical_cores")
    for other in sorted(path.parent.glob("*.json")):
        if other == path or other.name.endswith(".quick.json") != path.name.endswith(
                ".quick.json"):
            continue
        try:
            found = load(other)
        except ResultsError:
            continue
        if all(found.machine.get(k) == results.machine.get(k) for k in same):
            return found.records, other
    return [], path


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def remaining(expected: Sequence[float | None], done_s: Sequence[float]) -> float | None:
    """Seconds left for cells not yet run: each cell's past duration where known, else the
    mean of the cells this run has finished; None if neither exists yet."""
    fallback = sum(done_s) / len(done_s) if done_s else None
    left = expected[len(done_s):]
    if any(e is None for e in left) and fallback is None:
        return None
    return sum(e if e is not None else fallback for e in left)


def dry_run_text(cells: Sequence[Cell], expected: Sequence[float | None], source: Path) -> str:
    """The cell matrix a run would time, with the estimated duration of each cell and all."""
    from tabulate import tabulate

    rows = []
    for i, (cell, est) in enumerate(zip(cells, expected), 1):
        variant = ",".join(f"{k}={v}" for k, v in sorted((cell.scenario or {}).items()))
        rows.append([i, cell.model.label, cell.runtime, "x".join(map(str, cell.shape)),
                     cell.threads, cell.extra.get(fields.TAG, "") or variant, duration(est)])
    table = tabulate(rows, headers=["#", "model", "runtime", "input", "threads", "variant",
                                    "estimate"], tablefmt="github", disable_numparse=True)
    return f"{table}\n\n{estimate_text(cells, expected, source)}; nothing was timed."


def estimate_text(cells: Sequence[Cell], expected: Sequence[float | None], source: Path) -> str:
    """How many cells and how long, from past records: the line ``--dry-run`` ends with and a
    run starts with."""
    known = [e for e in expected if e is not None]
    total = f"estimated duration: {duration(sum(known)) if known else 'unknown'}"
    if known and len(known) < len(cells):
        total += (f" for {len(known)} of {len(cells)} cells; the other "
                  f"{len(cells) - len(known)} unknown")
    return (f"{len(cells)} cells; {total} (from {source}"
            f"{'' if source.exists() else ', not written yet'})")


def start_text(bench: Benchmark, cells: Sequence[Cell], expected: Sequence[float | None],
               source: Path) -> str:
    """The line a run prints before any work: the dry run's estimate, and the networks it must
    train first (their time is not in the estimate: past records time cells, not training)."""
    text = f"{bench.name}: {estimate_text(cells, expected, source)}"
    train = weights.to_train([cell.model for cell in cells])
    if train:
        text += (f"; first trains {len(train)} network(s) missing from cache/ (minutes each "
                 "on 2 cores, not in the estimate)")
    return text


def _progress(i: int, n: int, cell: Cell, elapsed: float = 0.0,
              left: float | None = None) -> None:
    shape = "x".join(map(str, cell.shape))
    eta = f"{duration(elapsed)} elapsed, ~{duration(left)} left" if i > 1 or left else ""
    print(f"[{i}/{n}{', ' + eta if eta else ''}] {cell.model.label} | {cell.runtime} | "
          f"{shape} ...", file=sys.stderr, end="", flush=True)


def _outcome(record: Record) -> str:
    if record.ok and record.throughput:
        tp = record.throughput
        what = f"{tp:.1f} img/s" if tp >= 1 else f"{record.batch / tp:.2f} s per call"
    else:
        what = record.reason
    took = f" ({record.elapsed_s:.0f} s)" if record.elapsed_s else ""
    return f"{record.status}: {what}{took}"


def _done(record: Record) -> None:
    print(f" {_outcome(record)}", file=sys.stderr, flush=True)


CONTENDED_PAUSE_S = 20.0  # wait before re-timing a contended cell, so a burst can pass


def contended(record: Record) -> bool:
    return bool(record.ok and record.timing and record.timing.get("contended"))


def run_with_retries(cell: Cell, opts: cli.Options, pause: float = CONTENDED_PAUSE_S) -> Record:
    """Run a cell; while other work disturbed its timing, pause and re-time it (at most
    ``opts.retry_contended`` times). The last attempt is kept, still flagged if contended, and
    the earlier attempts' contention is recorded beside it. ``--quick`` runs cells in this
    process (see ``isolate.run_here``) unless ``--isolate``; full runs give each cell a fresh
    one."""

    def attempt() -> Record:
        return run_isolated(cell, timeout=opts.timeout) if opts.isolated else run_here(cell)

    record = attempt()
    earlier = []
    while contended(record) and len(earlier) < opts.retry_contended:
        share = record.timing["contention"]
        print(f" contended ({share['other_cores']:.2f} cores of other work, "
              f"{share['steal_cores']:.2f} steal); re-timing after {pause:g} s ...",
              file=sys.stderr, end="", flush=True)
        earlier.append(share)
        time.sleep(pause)
        record = attempt()
    if earlier:
        record.extra[fields.CONTENDED_ATTEMPTS] = earlier
    return record


def checked_cells(bench: Benchmark, opts: cli.Options) -> list[Cell]:
    """The run's cells, with every runtime option checked against what its runtime declares:
    a misspelt option is a usage error before any work, never a silent default."""
    cells = bench.make_cells(opts)
    for cell in cells:
        try:
            runtimes.check_options(cell.runtime, cell.runtime_options)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from exc
    return cells


def run(bench: Benchmark, opts: cli.Options, results: ResultsFile, path: Path,
        cells: list[Cell] | None = None) -> list[Record]:
    """Every cell in its own process; the file is saved after each one."""
    cells = bench.make_cells(opts) if cells is None else cells
    past, source = past_records(results, path)
    expected = estimates(cells, past)
    print(start_text(bench, cells, expected, source), file=sys.stderr, flush=True)
    weights.prepare([cell.model for cell in cells])  # before any cell, never under a timeout
    done: dict[str, Record] = {}
    took: list[float] = []  # wall seconds of each finished cell, for the progress line only
    start = time.monotonic()
    # one bar on a terminal (its ETA: past durations, see ``remaining``); plain lines otherwise
    shown = progress.bar(len(cells), bench.name, "cells", eta=False)

    def run_cells(todo: list[Cell], first: int, total: int) -> None:
        for i, cell in enumerate(todo, first):
            left = remaining(expected, took)
            if shown.disable:
                _progress(i, total, cell, time.monotonic() - start, left)
            else:
                shown.set_postfix_str(f"~{duration(left)} left; {cell.model.label} | "
                                      f"{cell.runtime}")
            cell_start = time.monotonic()
            record = run_with_retries(cell, opts)
            took.append(time.monotonic() - cell_start)
            if shown.disable:
                _done(record)
            else:
                shown.write(f"[{i}/{total}] {cell.model.label} | {cell.runtime}: "
                            f"{_outcome(record)}", file=sys.stderr)
                shown.update(1)
            keep(record)

    def keep(record: Record) -> None:
        with stop.deferred():  # a stop signal waits until this finished row is saved
            results.upsert(record)
            update(path, results, [record])  # merged into the file under its lock
        done[record.key] = record

    try:
        run_cells(cells, 1, len(cells))
        more = bench.follow_up(bench, opts, list(done.values())) if bench.follow_up else []
        if more:
            shown.write(f"follow-up: {len(more)} more cell(s) chosen from the results",
                        file=sys.stderr)
            expected = [*expected, *estimates(more, [])]
            shown.total += len(more)
            run_cells(more, len(cells) + 1, len(cells) + len(more))
    finally:
        shown.close()
    extra_rows = getattr(bench, "extra_rows", None)  # a stand-in benchmark may not have it
    for record in extra_rows(bench, opts, results) if extra_rows else ():
        keep(record)
    print(f"{len(cells) + len(more)} cells in {time.monotonic() - start:.0f} s -> {path}",
          file=sys.stderr)
    return list(done.values())


def main(bench: Benchmark, argv: Sequence[str] | None = None) -> int:
    prog = f"benchmarks/{bench.name}/benchmark.py"
    try:
        opts = bench.parse(argv)
        if opts.list:
            print(bench.listing())
            return 0
        path = results_path(opts.out, bench.name, machine.slug(), opts.quick)
        results = load_or_new(path, bench.name, machine.capture())
        cells = checked_cells(bench, opts)
    except (cli.UsageError, ResultsError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if opts.dry_run:
        past, source = past_records(results, path)
        print(dry_run_text(cells, estimates(cells, past), source))
        return 0
    try:
        with stop.on_signals():  # SIGTERM / SIGINT: end the cell's processes, keep the file
            done = run(bench, opts, results, path, cells)
    except KeyboardInterrupt as exc:
        return stop.stopped(exc, path)  # 130 or 143, one line saying where the cells are
    except ResultsError as exc:  # the file became unusable during the run: left untouched
        print(f"\n{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(bench.render(ResultsFile(bench.name, results.machine, done)))
    return 0


def load_script(path: Path) -> Benchmark:
    """The BENCHMARK a benchmarks/<name>/benchmark.py declares (scripts are not a package)."""
    import importlib.util

    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.parent.name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BENCHMARK
