"""Whether the TotalSegmentator peer can run: the optional ``peers`` dependency group found
without importing it, the missing group as a user mistake, the installed versions, and the row's
name built from them."""

from __future__ import annotations

import importlib.metadata
import importlib.util

INSTALL_COMMAND = "uv sync --group peers"
PACKAGES = ("totalsegmentator", "nnunetv2")


class PeerUnavailable(Exception):
    """The peers dependency group is not installed."""


def installed() -> bool:
    """Whether the peers group is installed (found without importing it: importing nnU-Net
    pulls in torch and sets environment variables)."""
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


def require_installed() -> None:
    if not installed():
        raise PeerUnavailable(f"the TotalSegmentator peer needs its dependency group: run "
                              f"'{INSTALL_COMMAND}' (or prefix the command with 'uv run --group "
                              f"peers')")


def check_available() -> None:
    """For a benchmark's --peers option: a missing group is a user mistake, one line, exit 2."""
    from segbench.cli import UsageError

    if not installed():
        raise UsageError(f"--peers needs the optional TotalSegmentator group: run "
                         f"'{INSTALL_COMMAND}' first")


def versions() -> dict[str, str]:
    out = {}
    for name in ("totalsegmentator", "nnunetv2", "torch", "dynamic-network-architectures",
                 "nibabel", "SimpleITK"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def label(mode: str, ml: bool, pkg: dict[str, str] | None = None) -> str:
    """The row's name: the tool, its version and options, and what runs underneath."""
    pkg = versions() if pkg is None else pkg
    opts = f"--{mode}" + (" --ml" if ml else " (one file per class)")
    return (f"TotalSegmentator {pkg.get('totalsegmentator', '?')} {opts}, as shipped "
            f"(nnU-Net {pkg.get('nnunetv2', '?')}, PyTorch {pkg.get('torch', '?')} eager)")
