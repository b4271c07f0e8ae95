"""HOW a model runs: one module per backend behind one small interface.

``get(name).prepare(model, example, threads, **options)`` returns a :class:`Prepared` whose
``call(x)`` runs one inference on a CPU float32 tensor and returns the runtime's native output
(a torch tensor, a numpy array, or a tuple of them). Runtimes know nothing about which model
they run; converting outputs to numpy for fidelity is done outside the timed call by
:func:`to_numpy`, so no runtime pays for a copy the others do not.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:  # the registry is read by reports, which never import torch
    import torch
    from torch import nn


@dataclass(frozen=True)
class Entry:
    """One registry line: where a runtime lives and what it is, readable without importing it
    (reports and benchmark lists never load torch for this). ``precision`` must equal the
    runtime object's own (a test checks every line)."""

    module: str  # under segbench.runtimes, imported lazily: a torch-only run never loads OpenVINO
    toolchain: str  # what runs the graph: eager PyTorch, torch.compile (inductor), ORT, OpenVINO
    precision: str  # fp32 / bf16 / int8


# Every runtime, one line each. The order is the order benchmarks list them (the champion's
# "runtimes" rows, `--list`, wildcards): grouped by toolchain, reference first.
REGISTRY: dict[str, Entry] = {
    "eager": Entry("pytorch", "eager", "fp32"),
    "compile": Entry("pytorch", "compile", "fp32"),
    "compile-bf16": Entry("pytorch", "compile", "bf16"),
    "compile-int8": Entry("pt2e", "compile", "int8"),  # PT2E quantised, compiled by inductor
    "ort-fp32": Entry("ort", "ort", "fp32"),
    "ort-int8": Entry("ort", "ort", "int8"),
    "openvino-fp32": Entry("openvino_rt", "openvino", "fp32"),
    "openvino-bf16": Entry("openvino_rt", "openvino", "bf16"),
    "openvino-int8": Entry("openvino_rt", "openvino", "int8"),
}
# runtime name -> module holding it (tests add a fake runtime here)
RUNTIME_MODULES = {name: f"segbench.runtimes.{e.module}" for name, e in REGISTRY.items()}
REFERENCE = "eager"  # fidelity is measured against FP32 eager


@dataclass
class Prepared:
    call: Callable[[torch.Tensor], Any]
    info: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], None] | None = None  # e.g. remove a temporary ONNX directory


class Runtime(Protocol):
    name: str
    precision: str  # fp32 / bf16 / int8

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run on this machine (a ``skipped`` row), or None."""

    def prepare(self, model: nn.Module, example: torch.Tensor, threads: int,
                **options: Any) -> Prepared: ...


def names() -> list[str]:
    return list(RUNTIME_MODULES)


def precision_of(name: str) -> str:
    """fp32 / bf16 / int8, from the registry (no import of the runtime)."""
    return REGISTRY[name].precision


def toolchain_of(name: str) -> str:
    """eager / compile / ort / openvino, from the registry (no import of the runtime)."""
    return REGISTRY[name].toolchain


def of_toolchain(toolchain: str) -> tuple[str, ...]:
    """The runtimes of one toolchain, in the registry's order."""
    return tuple(name for name, e in REGISTRY.items() if e.toolchain == toolchain)


def ordered(first: Sequence[str], leave_out: Sequence[str] = ()) -> tuple[str, ...]:
    """Every registered runtime but ``leave_out``: ``first`` in its own order, then the others
    in the registry's (a new runtime joins a list built this way at its end). A benchmark
    states only what it chooses (an order, what it leaves out); membership is the registry's.
    ValueError for a name the registry does not hold, so a misspelt one fails at import."""
    unknown = [n for n in (*first, *leave_out) if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown runtime(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(REGISTRY)}")
    head = [n for n in dict.fromkeys(first) if n not in leave_out]
    return tuple(head + [n for n in REGISTRY if n not in head and n not in leave_out])


def get(name: str) -> Runtime:
    if name not in RUNTIME_MODULES:
        raise KeyError(f"unknown runtime {name!r}; valid: {', '.join(RUNTIME_MODULES)}")
    return importlib.import_module(RUNTIME_MODULES[name]).RUNTIMES[name]


_NOT_OPTIONS = ("self", "model", "example", "threads")


def option_names(name: str) -> list[str]:
    """The options a runtime declares: the keyword parameters of its ``prepare``."""
    signature = inspect.signature(get(name).prepare)
    return [p.name for p in signature.parameters.values()
            if p.name not in _NOT_OPTIONS
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_options(name: str, options: dict[str, Any]) -> None:
    """ValueError naming what ``name`` takes if ``options`` holds anything else."""
    valid = option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"runtime {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"it takes: {', '.join(valid) or 'none'}")


def accepted(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``name`` declares: what a scenario offers every runtime
    (e.g. calibration images) reaches only the runtimes that use it."""
    valid = set(option_names(name))
    return {k: v for k, v in options.items() if k in valid}


# A module that stands for a user's ONNX file (family "onnx-file") carries the file's path under
# this attribute; the ONNX runtimes run the file (option ``onnx_file``), the others refuse it.
ONNX_FILE_ATTRIBUTE = "onnx_file"


def onnx_file_of(model: Any) -> str | None:
    """The ONNX file ``model`` stands for, or None for an ordinary network."""
    value = getattr(model, ONNX_FILE_ATTRIBUTE, None)
    return value if isinstance(value, str) else None


def refuse_onnx_file(runtime: str, model: Any) -> None:
    """ValueError (a failed row with this one line) when a runtime that runs PyTorch modules
    is handed a stand-in for an ONNX file: it has no network of its own to run."""
    path = onnx_file_of(model)
    if path:
        raise ValueError(f"{runtime} runs PyTorch modules, not ONNX files: {path} runs under "
                         "the ort-* and openvino-* runtimes only")


def to_numpy(out: Any) -> np.ndarray | list[np.ndarray]:
    """A runtime's native output as float32 numpy (a list for multi-output models)."""
    if isinstance(out, (list, tuple)):
        if len(out) == 1:
            return to_numpy(out[0])
        return [to_numpy(o) for o in out]
    import torch

    if isinstance(out, torch.Tensor):
        return out.detach().float().contiguous().numpy()
    return np.asarray(out, dtype=np.float32)
