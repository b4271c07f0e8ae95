"""An ONNX segmentation network as input (issue 25, part 2): the slice-wise whole-CT pipeline
around a user's own ONNX file, under ONNX Runtime and OpenVINO at FP32, bf16 and INT8, each
compared with the file's own FP32 output (ONNX Runtime FP32, the reference).

**The file** (:func:`check_onnx`, before any work): one input, float32, rank 4 (N, C, H, W)
with C = 1 or 3; its first output rank 4 (N, classes, h, w; logits at any resolution). N may be
dynamic (then ``--onnx-batch`` slices per call, default 1) or static b (then every call gets
exactly b slices, the last batch padded). H and W may be dynamic (the slices go in at the CT's
own plane, padded with air to a multiple of 32 as the project's 2D networks get them) or
static (the slices are resized to them). Anything else is one line naming the file
(``cli.UsageError``, exit 2).

**Its input** (``Pipeline.windows``, :mod:`segbench.pipelines.windowing`): one CT window per
channel, given as ``--onnx-window CENTRE,WIDTH`` in HU, clipped and scaled to [0, 1]; given once
for a 3-channel network it is repeated over the channels, given three times each channel has its
own. Without ``--onnx-window``: the project's display windows, (0, 2000), (40, 400) and
(175, 250) for 3 channels, the first alone for 1 channel; the row's pipeline says which.

**Its slice size** (``Pipeline.size``): ``--onnx-size N`` (or the file's static H x W): every
slice is resized bilinearly to N x N and the logits are resized back to the CT's plane
bilinearly before the argmax (resizing rather than padding: a 512 x 512 CT and a network
trained at 256 x 256 meet that way; padding would only fit a CT smaller than the network).
Without either the CT's own plane is used.

**Its cells** (:func:`onnx_cells`): whole_ct's loop cells (``whole_ct.plan.loop_cell``) of
model family ``onnx-file`` (:mod:`segbench.models.onnx_file`, a stand-in module carrying the
path) with the runtime option ``onnx_file`` set for every runtime that declares it, so ONNX
Runtime and OpenVINO run the file as it is; the PyTorch runtimes (eager, compile*) do not
declare it and their rows fail with the one-line reason that they run no ONNX file. INT8
calibrates on slices of the CT (``pipelines.inputs.calibration_passes``: evenly spaced slice
batches of a NIfTI ``--input``; of the calibration-split phantom for the phantom CT, by the
project's rule never to calibrate on the evaluated phantom).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from segbench.catalogue import Pipeline
from segbench.cli import UsageError

ONNX_RUNTIMES = ("ort-fp32", "ort-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")
QUICK_RUNTIMES = ("ort-fp32", "openvino-fp32")
REFERENCE_RUNTIME = "ort-fp32"  # saves the labels every other runtime is compared with
FAMILY = "onnx-file"  # segbench.models.onnx_file
METHOD_KEY = "onnx"  # the cells' method / tag
CHANNELS = (1, 3)
DIGEST_CHARS = 16

Dim = int | str | None  # a static size, a symbolic name, or unknown


# --------------------------------------------------------------------------------------------
# The file


@dataclass(frozen=True)
class OnnxSpec:
    """What the slice pipeline needs to know about an ONNX file, read from its header."""

    path: str
    input_name: str
    input_shape: tuple[Dim, ...]  # (N, C, H, W); dims may be symbolic
    output_name: str
    output_shape: tuple[Dim, ...] | None  # None: the file does not say
    opset: int | None
    params: int  # elements of its initialisers (weights)

    @property
    def channels(self) -> int:
        return int(self.input_shape[1])  # type: ignore[arg-type]  # static: checked

    @property
    def batch(self) -> int | None:
        """Slices per call if the file fixes them, None for a dynamic batch."""
        return _static(self.input_shape[0])

    @property
    def plane(self) -> tuple[int, int] | None:
        """(H, W) if the file fixes both, else None."""
        h, w = (_static(d) for d in self.input_shape[2:])
        return (h, w) if h is not None and w is not None else None

    @property
    def classes(self) -> int | None:
        """Output channels if the file fixes them."""
        return _static(self.output_shape[1]) if self.output_shape else None

    def describe(self) -> dict[str, Any]:
        """For the rows: the file as the pipeline reads it."""
        return {"file": self.path, "input": self.input_name,
                "input_shape": [_text(d) for d in self.input_shape],
                "output": self.output_name,
                "output_shape": ([_text(d) for d in self.output_shape]
                                 if self.output_shape else None),
                "opset": self.opset, "params": self.params}


def _static(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) else None


def _text(dim: Dim) -> int | str:
    return "?" if dim is None else dim


def _shape_text(dims: Sequence[Dim]) -> str:
    return "(" + ", ".join(str(_text(d)) for d in dims) + ")"


def _dims(value_info: Any) -> tuple[Dim, ...] | None:
    """A graph input's or output's dims (int, symbol, or None), or None without a shape."""
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                 else (d.dim_param or None) for d in tensor.shape.dim)


def square(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def check_onnx(path: str | Path, slice_size: int | Sequence[int] | None = None) -> OnnxSpec:
    """Read and check a user's ONNX segmentation network (its header only: weights in a side
    file are not loaded). ``slice_size`` (N or (H, W)) is the size the slices will be given at,
    which a static H x W must equal. Raises ``UsageError("<path>: <what is wrong>")``."""
    import onnx

    def refuse(what: str) -> UsageError:
        return UsageError(f"{path}: {what}")

    file = Path(path)
    if not file.exists():
        raise refuse("no such file")
    if not file.is_file():
        raise refuse("not a file")
    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure: not an ONNX model
        first = (str(exc).strip().splitlines() or [""])[0]
        raise refuse(f"not an ONNX model ({type(exc).__name__}: {first})"[:200]) from None
    graph = model.graph
    if model.ir_version <= 0 or not graph.node:
        raise refuse("not an ONNX model (no graph in it)")
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise refuse(f"the network takes {len(inputs)} inputs ({names}); a slice network "
                     "takes one, (N, C, H, W)")
    given = inputs[0]
    elem = given.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(elem) if elem else "not a tensor"
        raise refuse(f"input {given.name!r} is {kind}; the slice pipeline feeds float32")
    dims = _dims(given)
    if dims is None or len(dims) != 4:
        shape = "no shape" if dims is None else f"shape {_shape_text(dims)}"
        raise refuse(f"input {given.name!r} has {shape}; a slice network takes (N, C, H, W), "
                     "rank 4")
    if dims[1] not in CHANNELS:
        raise refuse(f"input {given.name!r} has {_text(dims[1])} channels; the slice pipeline "
                     "feeds 1 (one CT window) or 3 (three windows)")
    want = square(slice_size)
    if want is not None:
        for axis, (dim, size) in enumerate(zip(dims[2:], want)):
            if isinstance(dim, int) and dim != size:
                raise refuse(f"input {given.name!r} {_shape_text(dims)} takes slices of "
                             f"{_shape_text(dims[2:])}, not the slice size "
                             f"{want[0]}x{want[1]} given ({'HW'[axis]} differs)")
    if not graph.output:
        raise refuse("the network has no output")
    out = graph.output[0]
    out_dims = _dims(out)
    if out_dims is not None and len(out_dims) != 4:
        raise refuse(f"output {out.name!r} has shape {_shape_text(out_dims)}; a slice network "
                     "returns (N, classes, h, w), rank 4")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    params = 0
    for tensor in graph.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        params += count
    return OnnxSpec(path=str(file), input_name=given.name, input_shape=dims,
                    output_name=out.name, output_shape=out_dims, opset=opset, params=params)


def file_digest(path: str | Path) -> str:
    """The first characters of the file's SHA-256: a changed file is another network (its
    cells and reference labels get other keys; the worker refuses a file changed since)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:DIGEST_CHARS]


# --------------------------------------------------------------------------------------------
# The pipeline around it


def default_windows(channels: int) -> tuple[tuple[float, float], ...]:
    """The project's display windows as (centre, width): all three, or the widest alone."""
    from segbench.data.phantom import WINDOWS

    windows = tuple(((lo + hi) / 2, hi - lo) for lo, hi in WINDOWS)
    return windows if channels == 3 else windows[:1]


def onnx_pipeline(spec: OnnxSpec, windows: Sequence[Sequence[float]] | None = None,
                  size: int | Sequence[int] | None = None, batch: int | None = None
                  ) -> Pipeline:
    """The slice-wise pipeline of ``spec``: its windows (one per channel, one repeated, or the
    defaults), its slice size (given, or the file's static H x W, or None: the CT's plane) and
    slices per call (the file's static batch, else ``batch``, else 1). Usage errors name the
    file."""
    def refuse(what: str) -> UsageError:
        return UsageError(f"{spec.path}: {what}")

    channels = spec.channels
    if windows:
        chosen = tuple((float(c), float(w)) for c, w in windows)
        if len(chosen) == 1:
            chosen = chosen * channels
        if len(chosen) != channels:
            raise refuse(f"the network takes {channels} channel(s), {len(windows)} windows "
                         f"given (one, or one per channel)")
        if any(w <= 0 for _, w in chosen):
            raise refuse("a window's width must be positive")
    else:
        chosen = default_windows(channels)
    want = square(size)
    if want is not None and spec.plane is not None and want != spec.plane:
        raise refuse(f"the network takes {spec.plane[0]}x{spec.plane[1]} slices, not the slice "
                     f"size {want[0]}x{want[1]} given")
    if batch is not None and batch < 1:
        raise refuse(f"slices per call must be at least 1, got {batch}")
    if batch is not None and spec.batch is not None and batch != spec.batch:
        raise refuse(f"the network takes exactly {spec.batch} slice(s) per call, not {batch}")
    return Pipeline("2d", Path(spec.path).name, spec.classes or 0,
                    batch=spec.batch or batch or 1, path="full", windows=chosen,
                    size=want or spec.plane)


# --------------------------------------------------------------------------------------------
# The command line (argparse types check before any work; argparse turns their errors into
# one line and exit 2 through cli's parser)


def onnx_argument(text: str) -> str:
    """--onnx: a readable ONNX slice network (checked now, with the slice size later)."""
    try:
        check_onnx(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(Path(text).resolve())


def window_argument(text: str) -> tuple[float, float]:
    """--onnx-window CENTRE,WIDTH in HU, e.g. 40,400."""
    parts = text.split(",")
    try:
        centre, width = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CENTRE,WIDTH in HU (e.g. 40,400), got {text!r}") from None
    if width <= 0:
        raise argparse.ArgumentTypeError(f"the window's width must be positive, got {text!r}")
    return (centre, width)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """--onnx FILE, --onnx-window CENTRE,WIDTH (once, or once per channel), --onnx-size N,
    --onnx-batch N; read back from ``opts.extra`` ("onnx", "onnx_window", "onnx_size",
    "onnx_batch") by :func:`onnx_cells`."""
    group = parser.add_argument_group("an ONNX segmentation network as input")
    group.add_argument("--onnx", type=onnx_argument, metavar="FILE",
                       help="a 2D segmentation network, input (N, 1 or 3, H, W) float32, "
                            "output (N, classes, h, w); run slice-wise on the CT")
    group.add_argument("--onnx-window", type=window_argument, action="append",
                       metavar="CENTRE,WIDTH",
                       help="its CT window in HU, scaled to [0, 1]: once (every channel) or "
                            "once per channel; default: the project's display windows")
    group.add_argument("--onnx-size", type=positive_int, metavar="N",
                       help="the slice size it takes: slices resized to N x N, logits back "
                            "(default: the file's static H x W, else the CT's plane)")
    group.add_argument("--onnx-batch", type=positive_int, metavar="N",
                       help="slices per call for a dynamic batch (a static batch is the "
                            "file's); default 1")


def onnx_plan(opts: Any) -> tuple[OnnxSpec, Pipeline] | None:
    """The checked file and its pipeline from the command line, or None without --onnx."""
    extra = opts.extra
    if not extra.get("onnx"):
        return None
    size = extra.get("onnx_size")
    spec = check_onnx(extra["onnx"], size)
    return spec, onnx_pipeline(spec, extra.get("onnx_window"), size, extra.get("onnx_batch"))


def reference_key(spec: OnnxSpec, digest: str, pipe: Pipeline, ct: dict[str, Any]) -> str:
    """The key the reference runtime saves its labels under, the others compare with: the
    file (path and contents), the pipeline around it and the CT."""
    return json.dumps([FAMILY, spec.path, digest, pipe.to_dict(), ct], sort_keys=True)


def onnx_cells(bench: Any, opts: Any, ct: dict[str, Any],
               runtimes: Sequence[str] | None = None, loops: int = 1) -> list[Any]:
    """Whole-CT loop cells of the ``--onnx`` file on ``ct`` (a ``whole_ct.plan.ct_source``),
    one per runtime (default :data:`ONNX_RUNTIMES`, :data:`QUICK_RUNTIMES` with --quick);
    the reference (ort-fp32) comes first and is added when missing, since it saves the labels
    the others are scored against (``agreement_vs_eager`` and ``dice_vs_eager`` in the rows:
    against ort-fp32 here, ``extra["reference_runtime"]`` says so). [] without --onnx.
    Raises UsageError (naming the file) for a file or options that do not fit."""
    from dataclasses import replace

    from segbench import runtimes as registry
    from segbench.benchmarks.whole_ct.plan import loop_cell
    from segbench.catalogue import MethodSpec
    from segbench.models import ModelSpec

    plan = onnx_plan(opts)
    if plan is None:
        return []
    spec, pipe = plan
    chosen = list(runtimes if runtimes is not None
                  else (QUICK_RUNTIMES if opts.quick else ONNX_RUNTIMES))
    unknown = [r for r in chosen if r not in registry.REGISTRY]
    if unknown:
        raise UsageError(f"unknown runtime {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(registry.names())}")
    chosen = [REFERENCE_RUNTIME] + [r for r in dict.fromkeys(chosen) if r != REFERENCE_RUNTIME]
    digest = file_digest(spec.path)
    model = ModelSpec(FAMILY, spec.path, pipe.classes, {"sha256": digest})
    size = f"{pipe.size[0]}x{pipe.size[1]}" if pipe.size else "the CT's plane"
    windows = "; ".join(f"{c:g},{w:g}" for c, w in pipe.windows or ())
    method = MethodSpec(METHOD_KEY, f"ONNX file {Path(spec.path).name}", FAMILY, spec.path,
                        pipe, tuple(chosen), "dice_vs_reference",
                        note=f"slice-wise, {pipe.batch} slice(s) per call at {size}, windows "
                             f"(centre,width HU) {windows}; compared with {REFERENCE_RUNTIME}")
    key = reference_key(spec, digest, pipe, ct)
    cells = []
    for runtime in chosen:
        cell = loop_cell(bench, opts, method, runtime, ct, loops=loops, reference=key,
                         saves_reference=runtime == REFERENCE_RUNTIME,
                         extra={"reference_runtime": REFERENCE_RUNTIME,
                                "onnx": spec.describe()})
        cells.append(replace(
            cell, model=model,
            shape=(pipe.batch, pipe.input_channels, *(pipe.size or (1, 1))),
            runtime_options=registry.accepted(runtime, {"onnx_file": spec.path})))
    return cells
