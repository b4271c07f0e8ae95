"""How each benchmark's results are shown, with nothing of how they are measured.

A :class:`View` turns a results file into Markdown (its tables, the weights check, the
provenance line) and names the figures it draws. Views read results only: this package and
everything it imports never import torch, timm, ONNX Runtime or OpenVINO and never execute a
benchmark script, so ``benchmarks/report.py`` renders the README and the results pages from
results/ alone (a test blocks those libraries and runs it). The run engine
(:mod:`segbench.bench`) uses a benchmark's view; no view imports the engine.

The views of every benchmark, by name: :data:`segbench.views.registry.VIEWS`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from segbench import tables as tab
from segbench.results import Record, ResultsFile

# (the view, or a Benchmark, and the results file) -> [(title, Markdown table)]
Tables = Callable[[Any, ResultsFile], list[tuple[str, str]]]
Plots = Callable[[ResultsFile, Path], list[Path | None]]


@dataclass(frozen=True)
class View:
    name: str
    title: str
    columns: Sequence[tab.Column] = ()
    sort_key: Callable[[Record], object] | None = None
    tables: Tables | None = None  # custom rendering; default one table from ``columns``
    plots: Plots | None = None  # figures drawn from the results file a page shows
    tradeoff: bool = True  # its rows feed the README's speed-versus-size trade-off plots
    trained: bool = False  # networks trained on phantoms first: the page says with what
    # a short form for the README (marker ``results:<name>.brief``); the page has the rest
    brief: Callable[[ResultsFile], str] | None = None

    def render(self, results: ResultsFile) -> str:
        """Markdown for a results file: every table, then where the numbers come from. Rows
        timed only to check that speed does not depend on the weights get their own table."""
        shown = replace(results, records=[r for r in results.records
                                          if not tab.is_weights_check(r)])
        if self.tables:
            parts = self.tables(self, shown)
        else:
            parts = [("", tab.render_table(shown.records, self.columns, self.sort_key))]
        check = tab.weights_check_table(results.records)
        if check:
            parts.append(("Speed with random and with trained weights (same network, phantom "
                          "input and runtime, one run)", check))
        chunks = [(f"**{title}**\n\n" if title else "") + table for title, table in parts]
        weights = tab.weights_note(results.records) if self.trained else ""
        return ("\n\n".join(chunks) + "\n\n" + (weights + " " if weights else "")
                + tab.provenance(results) + "\n")
