"""Progress bars for the person watching a run: one place that decides how they look.

Training (steps) and a benchmark's run loop (cells) each show one ``tqdm`` bar on stderr with
an ETA. A bar draws only where stderr is a terminal (``disable=None``): in a log file, a CI job
or a test it would be a stream of carriage returns, so there the callers keep printing their
plain lines instead (``Bar.disable`` says which applies). Nothing here is a measurement: the
seconds a bar shows never reach a results file.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def bar(total: int, desc: str, unit: str, *, quiet: bool = False, file: TextIO | None = None,
        eta: bool = True) -> tqdm:
    """A bar of ``total`` ``unit``s on stderr (or ``file``); disabled when ``quiet`` or when the
    stream is not a terminal. ``eta=False`` leaves the remaining time to the caller's postfix
    (the run loop knows each cell's past duration, which beats tqdm's mean rate)."""
    stream = sys.stderr if file is None else file
    shown = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} "
             + ("[{elapsed}<{remaining}{postfix}]" if eta else "[{elapsed} elapsed{postfix}]"))
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=True if quiet else None,
                dynamic_ncols=True, bar_format=shown)
