"""Results as flat CSV, for people who analyse in pandas or a spreadsheet.

One CSV per results file (one benchmark on one machine), one row per record. Nested fields
(timing, memory, fidelity, extra, submodules, protocol) become dotted columns such as
``timing.throughput`` or ``submodules.encoder.latency_p50_ms``, so every number has a column of its
own; lists (shape, per-repeat throughputs) are kept as JSON text in one cell. The runtime's
own description (``runtime_info``) keeps only its top-level scalars: its nested inventories of
operators are for reading in the JSON, not for a spreadsheet.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from segbench.results import Record, ResultsFile, atomic_writer, load

NESTED = ("timing", "memory", "fidelity", "extra", "submodules", "protocol", "packages")
SHALLOW = ("runtime_info",)


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def _walk(prefix: str, value: Any, out: dict[str, Any], deep: bool) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}"
            if isinstance(item, dict):
                if deep:
                    _walk(name, item, out, deep)
                continue
            out[name] = _cell(item)
    else:
        out[prefix] = _cell(value)


def flatten(record: Record, machine_slug: str = "") -> dict[str, Any]:
    """One CSV row: top-level scalars, then the nested blocks as dotted columns."""
    data = record.to_dict()
    row: dict[str, Any] = {"machine": machine_slug}
    for key, value in data.items():
        if key in NESTED:
            _walk(key, value or {}, row, deep=True)
        elif key in SHALLOW:
            _walk(key, value or {}, row, deep=False)
        else:
            row[key] = _cell(value)
    return row


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every column any row has, in order of first appearance."""
    return list(dict.fromkeys(name for row in rows for name in row))


def write_csv(results: ResultsFile, path: Path) -> Path:
    slug = results.machine.get("slug") or (results.path.stem if results.path else "")
    rows = [flatten(r, slug) for r in results.records]
    with atomic_writer(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def export_all(results_dir: Path, out_dir: Path) -> list[Path]:
    """``results/<benchmark>/<machine>.json`` -> ``out_dir/<benchmark>/<machine>.csv`` for
    every full-run file (quick smoke files are left out, as everywhere else)."""
    written = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        if path.name.endswith(".quick.json"):
            continue
        written.append(write_csv(load(path), Path(out_dir) / path.parent.name
                                 / f"{path.stem}.csv"))
    return written
