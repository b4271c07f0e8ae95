"""The options every benchmark shares, and their validation.

A user mistake gets one line on stderr and exit code 2, before any work starts: never a
traceback, never a half-run benchmark.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from segbench import machine, runtimes
from segbench.models import DEFAULT_CLASSES, family

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 600.0


class UsageError(Exception):
    """A mistake in the command line; its message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own mistakes: one line, exit 2
        raise UsageError(message)


@dataclass
class Options:
    models: list[str]
    runtimes: list[str]
    size: int
    batch: int
    threads: int
    classes: int
    repeats: int
    quick: bool
    out: Path
    timeout: float
    list: bool
    extra: dict[str, Any] = field(default_factory=dict)  # the benchmark's own options
    retry_contended: int = 1  # re-times of a cell that other work disturbed
    dry_run: bool = False  # print the cell matrix and an estimated duration, time nothing
    isolate: bool | None = None  # a fresh process per cell; None = yes unless --quick

    @property
    def isolated(self) -> bool:
        return (not self.quick) if self.isolate is None else self.isolate


def default_results_dir() -> Path:
    return REPO_ROOT / "results" if (REPO_ROOT / "pyproject.toml").exists() else Path("results")


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def build_parser(prog: str, description: str,
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
                 ) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--models", type=_comma_list,
                        help="comma list, shell wildcards allowed ('mobilenetv4*'); "
                             "default: the benchmark's")
    parser.add_argument("--runtimes", type=_comma_list,
                        help="comma list, wildcards allowed ('openvino-*'); see --list")
    parser.add_argument("--size", type=int, help="input height = width in pixels")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every runtime (default: physical cores)")
    parser.add_argument("--classes", type=int, default=None,
                        help=f"output classes (default {DEFAULT_CLASSES})")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer models, shorter timing; written to *.quick.json")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds per cell before it becomes a timeout row")
    parser.add_argument("--list", action="store_true", help="list models and runtimes, exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the cells this run would time and an estimated duration "
                             "from earlier results of this machine, then exit")
    parser.add_argument("--retry-contended", type=int, default=1, metavar="N",
                        help="re-time a cell up to N times, after a pause, when other work on "
                             "the machine disturbed its timing (default 1)")
    parser.add_argument("--isolate", action="store_true", default=None,
                        help="a fresh process per cell also with --quick (full runs always "
                             "isolate; --quick runs cells in its own process, faster to start)")
    if add_arguments:
        add_arguments(parser)
    return parser


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {directory}: not writable ({exc.strerror or exc})") from exc


def check_names(kind: str, given: Sequence[str], valid: Sequence[str]) -> None:
    unknown = [name for name in given if name not in valid]
    if unknown:
        raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(valid)}")


WILDCARDS = frozenset("*?[")


def expand_names(kind: str, given: Sequence[str], valid: Sequence[str]) -> list[str]:
    """Names with shell-style wildcards expanded against ``valid`` (fnmatch, in ``valid``'s
    order), duplicates dropped. A pattern that matches nothing, like an unknown name, is a
    usage error naming the valid names."""
    out: list[str] = []
    for item in given:
        if WILDCARDS & set(item):
            matched = [name for name in valid if fnmatch.fnmatchcase(name, item)]
            if not matched:
                raise UsageError(f"{kind} pattern {item!r} matches nothing; valid: "
                                 f"{', '.join(valid)}")
        else:
            check_names(kind, [item], valid)
            matched = [item]
        out += [name for name in matched if name not in out]
    return out


def check_size(size: int, families: Sequence[str]) -> None:
    multiple = max(family(f).size_multiple for f in families)
    if size <= 0 or size % multiple:
        lower = max(multiple, size // multiple * multiple)
        raise UsageError(f"--size {size}: these networks need a multiple of {multiple} "
                         f"(e.g. {lower} or {lower + multiple})")


def positive(name: str, value: float | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"--{name} must be at least 1, got {value:g}")


def parse(argv: Sequence[str] | None, *, prog: str, description: str,
          models: Sequence[str], valid_models: Sequence[str], quick_models: Sequence[str],
          runtime_defaults: Sequence[str], quick_runtimes: Sequence[str],
          size: int, quick_size: int, families: Sequence[str], classes: int = DEFAULT_CLASSES,
          add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> Options:
    """Parse and validate; raises UsageError with the line to print."""
    ns = build_parser(prog, description, add_arguments).parse_args(argv)
    shared = {"models", "runtimes", "size", "batch", "threads", "classes", "repeats", "quick",
              "out", "timeout", "list", "retry_contended", "dry_run", "isolate"}
    extra = {k: v for k, v in vars(ns).items() if k not in shared}
    opts = Options(
        models=ns.models or list(quick_models if ns.quick else models),
        runtimes=ns.runtimes or list(quick_runtimes if ns.quick else runtime_defaults),
        size=ns.size if ns.size is not None else (quick_size if ns.quick else size),
        batch=ns.batch,
        threads=ns.threads if ns.threads is not None else machine.physical_cores(),
        classes=ns.classes if ns.classes is not None else classes,
        repeats=ns.repeats if ns.repeats is not None else (2 if ns.quick else 5),
        quick=ns.quick,
        out=ns.out if ns.out is not None else default_results_dir(),
        timeout=ns.timeout,
        list=ns.list,
        extra=extra,
        retry_contended=ns.retry_contended,
        dry_run=ns.dry_run,
        isolate=ns.isolate,
    )
    if opts.list:
        return opts
    opts.models = expand_names("model", opts.models, valid_models)
    opts.runtimes = expand_names("runtime", opts.runtimes, runtimes.names())
    check_size(opts.size, families)
    for name in ("batch", "threads", "classes", "repeats"):
        positive(name, getattr(opts, name))
    if opts.retry_contended < 0:
        raise UsageError(f"--retry-contended must be 0 or more, got {opts.retry_contended}")
    if opts.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {opts.timeout:g}")
    if opts.threads > (os.cpu_count() or opts.threads):
        print(f"warning: --threads {opts.threads} exceeds the {os.cpu_count()} CPUs here; "
              "timings will be oversubscribed", file=sys.stderr)
    check_writable(opts.out)
    return opts
