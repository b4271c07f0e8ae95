"""The ``onnx-file`` family: a user's ONNX file as a model of the harness. The name is the
file's path; the network is the file itself, which only the ONNX runtimes run (their
``onnx_file`` option, set by ``segbench.ownnet.onnx_file.onnx_cells``).

What :func:`build` returns is a stand-in module, not the network: it carries the path (under
``runtimes.ONNX_FILE_ATTRIBUTE``, read by the runtimes without either side importing the
other), has no weights, and its forward returns zeros of the output's shape, so the worker's
FLOP/memory profile of it is zero (the file's size is in ``describe``: its parameter count).
The PyTorch runtimes refuse it, so a row under eager or compile says it runs no ONNX file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

ONNX_FILE_ATTRIBUTE = "onnx_file"  # = segbench.runtimes.ONNX_FILE_ATTRIBUTE (a test checks)


class OnnxFileStandIn(nn.Module):
    """Stands in for the ONNX file at ``path`` (see the module's docstring)."""

    def __init__(self, path: str, classes: int) -> None:
        super().__init__()
        setattr(self, ONNX_FILE_ATTRIBUTE, str(path))
        self.classes = max(int(classes), 1)  # 0: the file does not fix its classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], self.classes, *x.shape[2:]))


class OnnxFileFamily:
    dims = 2
    size_multiple = 1

    def names(self) -> list[str]:
        return []  # any path: the file is checked by segbench.ownnet.onnx_file.check_onnx

    def build(self, name: str, classes: int, sha256: str | None = None,
              **options: Any) -> nn.Module:
        """The stand-in for the file ``name``; ``sha256`` (the digest the run was planned
        with) must still match, or the file changed under the run."""
        if not Path(name).is_file():
            raise FileNotFoundError(f"{name}: no such file")
        if sha256 is not None:
            from segbench.ownnet.onnx_file import file_digest

            now = file_digest(name)
            if now != sha256:
                raise ValueError(f"{name} changed since the run was planned (sha256 {now}..., "
                                 f"planned {sha256}...)")
        return OnnxFileStandIn(name, classes)

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        from segbench.ownnet.onnx_file import check_onnx

        spec = check_onnx(name)
        return {"onnx_params": spec.params, "onnx_opset": spec.opset,
                "onnx_input_shape": spec.describe()["input_shape"]}


FAMILIES = {"onnx-file": OnnxFileFamily()}
