"""What machine a record came from. A number without this block is not a result."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16",
             "amx_int8")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_AFFINITY",
               "OMP_PROC_BIND", "GOMP_CPU_AFFINITY", "ORT_NUM_THREADS")
PACKAGES = ("torch", "timm", "onnx", "onnxruntime", "onnxscript", "openvino", "nncf",
            "segmentation-models-pytorch", "dynamic-network-architectures", "numpy")


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def cpu_model() -> str:
    for entry in _cpuinfo():
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for entry in _cpuinfo():
        if entry.get("flags"):
            return set(entry["flags"].split())
    return set()


def physical_cores() -> int:
    """Distinct (package, core) pairs; SMT siblings share a core and are not counted."""
    cores = {(e.get("physical id", "0"), e.get("core id", e.get("processor")))
             for e in _cpuinfo() if "processor" in e}
    return len(cores) or (os.cpu_count() or 1)


def has_bf16() -> bool:
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def available_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        # only code that can change a measurement makes a run "dirty", not docs or results
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "benchmarks", "pyproject.toml", "uv.lock"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not sha:
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def slug(model: str | None = None, cores: int | None = None) -> str:
    """A file-name-safe machine name, e.g. ``amd-epyc-2c``."""
    model = model if model is not None else cpu_model()
    cores = cores if cores is not None else physical_cores()
    model = re.sub(r"\((r|tm)\)|cpu|processor|with .*|@.*|\d+-core", " ", model.lower())
    words = re.sub(r"[^a-z0-9]+", "-", model).strip("-")
    return f"{words or 'cpu'}-{cores}c"


def capture() -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "slug": slug(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": _versions(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
