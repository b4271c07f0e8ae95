"""segbench: the shared library of the benchmark-cnn benchmarks."""

import warnings

# timm/torchvision import a deprecated torch.jit API; the warning says nothing about our runs
# and would be the first thing a user sees above a one-line error.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.interface.*", category=FutureWarning)


def block_telemetry() -> bool:
    """Keep OpenVINO and NNCF from sending usage telemetry; True if it was still possible.

    No network at run time, ever. openvino-telemetry 2025.2 ignores OPENVINO_TELEMETRY_OPT_OUT
    and treats a missing consent file as consent: ``import openvino`` posts an event and
    ``nncf.quantize`` posts more. Both fall back to a no-op stub when the package cannot be
    imported, which a ``None`` entry in ``sys.modules`` makes so for this process only. Done at
    package import, before anything can import openvino.
    """
    import sys

    if sys.modules.get("openvino_telemetry") is not None:
        return False  # already imported by someone else; too late to stop it here
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    return True


TELEMETRY_BLOCKED = block_telemetry()
