"""Getting a model out of PyTorch: ONNX export into a scratch directory, shared by the ONNX
Runtime and OpenVINO backends, and the naming of the preparation step that failed.

Both backends run the very same exported graph, so a difference between their rows is the
runtime's, not the converter's.

Exporter choice: the torch.export-based ("dynamo") exporter is the default. Under torch 2.15
both it and the legacy TorchScript exporter (``dynamo=False``) export every seed timm encoder
with matching outputs, but the legacy one is deprecated (a DeprecationWarning on every call)
and traces a single branch of data-dependent Python control flow with only a warning, where the
dynamo exporter refuses; the dynamo graphs also come out already optimised (fewer nodes). It is
slower (seconds rather than a fraction of one), which only lands in ``prepare_s``.
``exporter="legacy"`` remains an option for a model the dynamo exporter cannot take.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

EXPORTERS = ("dynamo", "legacy")
DEFAULT_EXPORTER = "dynamo"
# Pinned so a torch upgrade cannot silently change the graph both runtimes see; 20 is what both
# exporters of torch 2.15 produce by default, and ORT and OpenVINO both read it.
OPSET = 20
# Protobuf caps a single file at 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_BYTES = int(1.8 * 2**30)
ONNX_FILE = "model.onnx"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StageFailed(RuntimeError):
    """A preparation step failed; the message starts with the step's name."""


def root_cause(exc: BaseException) -> str:
    """One line from the innermost cause: exporters wrap the useful message (say, 'No ONNX
    function found for prims.bessel_i0') in generic 'step 3/3 failed' text."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:240]


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Re-raise any failure inside as ``StageFailed('<name>: <cause>')`` so a failed record
    says which step broke (export, quantisation, compilation...), not just 'runtime'."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised with its stage, never swallowed
        raise StageFailed(f"{name}: {root_cause(exc)}") from exc


def scratch_dir(prefix: str) -> Path:
    """A fresh directory for intermediate files, under TMPDIR (the worker points it at the
    cell's own directory, so even a killed worker leaves nothing behind)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class OnnxExport:
    path: Path
    external_data: bool
    info: dict[str, Any] = field(default_factory=dict)


def needs_external_data(model: nn.Module) -> bool:
    """Weights too large for one protobuf file go to a side file; small models stay in one."""
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return size >= EXTERNAL_DATA_BYTES


def export_onnx(model: nn.Module, example: torch.Tensor, directory: Path,
                exporter: str = DEFAULT_EXPORTER) -> OnnxExport:
    """Export ``model`` at the example's static shape and check the graph.

    Static shapes on purpose: every cell has one fixed shape, and both runtimes plan memory and
    pick kernels better when they know it.
    """
    from segbench.runtimes import onnx_file_of

    if onnx_file_of(model):  # exporting the stand-in would time a graph of zeros
        raise ValueError(f"the model stands for the ONNX file {onnx_file_of(model)}: give it "
                         "as the runtime option onnx_file")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    import onnx

    path = directory / ONNX_FILE
    external = needs_external_data(model)
    with stage(f"onnx export ({exporter})"):
        if exporter == "dynamo":
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=external,
                              opset_version=OPSET, input_names=["input"], verbose=False)
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=["input"])
    with stage("onnx check"):
        onnx.checker.check_model(str(path))  # by path: works for external data too
        graph = onnx.load(str(path), load_external_data=False).graph
    info = {"exporter": f"torch.onnx {exporter}", "opset": OPSET, "onnx": onnx.__version__,
            "external_data": external, "outputs": len(graph.output)}
    return OnnxExport(path=path, external_data=external, info=info)


def given_onnx(path: str | Path) -> OnnxExport:
    """A user's ONNX file as the graph, as it is: no export, no rewrite (the ``onnx_file``
    option of the ONNX Runtime and OpenVINO runtimes). Only its header is read here (weights
    in a side file stay there); INT8 quantisation writes its own files to the scratch
    directory, never next to the user's file. The file was checked when the run was planned
    (:func:`segbench.ownnet.onnx_file.check_onnx`)."""
    import onnx

    path = Path(path)
    with stage("onnx file"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        graph_model = onnx.load(str(path), load_external_data=False)
    graph = graph_model.graph
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    opset = next((o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx")),
                 None)
    info = {"exporter": "none (the ONNX file as given)", "onnx_file": str(path),
            "opset": opset, "onnx": onnx.__version__, "external_data": external,
            "outputs": len(graph.output)}
    return OnnxExport(path=path, external_data=external, info=info)
