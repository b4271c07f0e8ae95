"""What machine a record came from. A number without this block is not a result.

The identity of a CPU is its vendor, family, model and stepping as /proc/cpuinfo reports them;
the marketing name is not enough ("AMD EPYC" is a Zen 4 on one VM and a Zen 5 on the next, and
the two differ by 2x in speed). The microarchitecture is looked up from the family and model in
tables of known parts and is ``unknown (family F model M)`` otherwise: never a guess.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# Instruction-set extensions that change which kernels oneDNN / ORT / OpenVINO pick.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx_vnni",
             "avx512_vp2intersect", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_AFFINITY",
               "OMP_PROC_BIND", "GOMP_CPU_AFFINITY", "ORT_NUM_THREADS")
PACKAGES = ("torch", "timm", "onnx", "onnxruntime", "onnxscript", "openvino", "nncf", "torchao",
            "segmentation-models-pytorch", "dynamic-network-architectures", "numpy")
CPUINFO = Path("/proc/cpuinfo")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")

# (family, first model, last model) -> name; ranges as the Linux kernel's AMD feature setup
# (arch/x86/kernel/cpu/amd.c) assigns them.
_AMD = (
    (0x17, 0x00, 0x2F, "Zen"), (0x17, 0x50, 0x5F, "Zen"),
    (0x17, 0x30, 0x4F, "Zen 2"), (0x17, 0x60, 0x7F, "Zen 2"), (0x17, 0x90, 0x91, "Zen 2"),
    (0x17, 0xA0, 0xAF, "Zen 2"),
    (0x19, 0x00, 0x0F, "Zen 3"), (0x19, 0x20, 0x5F, "Zen 3"),
    (0x19, 0x10, 0x1F, "Zen 4"), (0x19, 0x60, 0xAF, "Zen 4"),
    (0x1A, 0x00, 0x4F, "Zen 5"), (0x1A, 0x60, 0x7F, "Zen 5"),
)
# family 6 model -> name (server parts first; the client parts people benchmark on)
_INTEL = {
    0x55: "Skylake-SP",  # Cascade Lake (stepping 5-7) and Cooper Lake (11) share the model
    0x6A: "Ice Lake-SP", 0x6C: "Ice Lake-D", 0x8F: "Sapphire Rapids", 0xCF: "Emerald Rapids",
    0xAD: "Granite Rapids", 0xAE: "Granite Rapids-D", 0xAF: "Sierra Forest",
    0x4E: "Skylake", 0x5E: "Skylake", 0x8E: "Kaby Lake", 0x9E: "Coffee Lake",
    0x7D: "Ice Lake", 0x7E: "Ice Lake", 0x8C: "Tiger Lake", 0x8D: "Tiger Lake",
    0x97: "Alder Lake", 0x9A: "Alder Lake", 0xB7: "Raptor Lake", 0xBA: "Raptor Lake",
    0xBF: "Raptor Lake", 0xAA: "Meteor Lake", 0xC5: "Arrow Lake", 0xC6: "Arrow Lake",
    0xBD: "Lunar Lake",
}
_INTEL_SKYLAKE_SP_STEPPINGS = {5: "Cascade Lake", 6: "Cascade Lake", 7: "Cascade Lake",
                               11: "Cooper Lake"}
# Arm: (implementer, part) -> name
_ARM = {
    (0x41, 0xD0C): "Neoverse N1", (0x41, 0xD40): "Neoverse V1", (0x41, 0xD49): "Neoverse N2",
    (0x41, 0xD4F): "Neoverse V2", (0x41, 0xD8E): "Neoverse N3", (0x41, 0xD84): "Neoverse V3",
    (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD03): "Cortex-A53",
    (0xC0, 0xAC3): "AmpereOne", (0x61, 0x022): "Apple M1", (0x61, 0x023): "Apple M1",
    (0x61, 0x032): "Apple M2", (0x61, 0x033): "Apple M2",
}
_ARM_IMPLEMENTERS = {0x41: "Arm", 0x61: "Apple", 0xC0: "Ampere", 0x48: "HiSilicon",
                     0x51: "Qualcomm", 0x4E: "NVIDIA"}


def _cpuinfo(path: Path | None = None) -> list[dict[str, str]]:
    try:
        text = (path or CPUINFO).read_text()
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


def _first(entries: list[dict[str, str]], *keys: str) -> str:
    for key in keys:
        for entry in entries:
            if entry.get(key):
                return entry[key]
    return ""


def _int(text: str) -> int | None:
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return None


def cpu_model(cpuinfo: list[dict[str, str]] | None = None) -> str:
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    name = _first(entries, "model name", "Model", "Hardware")
    return name or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: list[dict[str, str]] | None = None) -> set[str]:
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    return set(_first(entries, "flags", "Features").split())


def physical_cores(cpuinfo: list[dict[str, str]] | None = None) -> int:
    """Distinct (package, core) pairs; SMT siblings share a core and are not counted."""
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    cores = {(e.get("physical id", "0"), e.get("core id", e.get("processor")))
             for e in entries if "processor" in e}
    return len(cores) or (os.cpu_count() or 1)


def logical_cpus(cpuinfo: list[dict[str, str]] | None = None) -> int:
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    return sum(1 for e in entries if "processor" in e) or (os.cpu_count() or 1)


def has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def microarchitecture(vendor: str, family: int | None, model: int | None,
                      stepping: int | None = None, arm_part: tuple[int, int] | None = None) -> str:
    """The microarchitecture of a known part, else ``unknown (...)`` with what was read."""
    if vendor == "AuthenticAMD" and family is not None and model is not None:
        for fam, first, last, name in _AMD:
            if fam == family and first <= model <= last:
                return name
    if vendor == "GenuineIntel" and family == 6 and model is not None:
        if model == 0x55 and stepping in _INTEL_SKYLAKE_SP_STEPPINGS:
            return _INTEL_SKYLAKE_SP_STEPPINGS[stepping]
        if model in _INTEL:
            return _INTEL[model]
    if arm_part is not None:
        if arm_part in _ARM:
            return _ARM[arm_part]
        implementer = _ARM_IMPLEMENTERS.get(arm_part[0], f"implementer 0x{arm_part[0]:x}")
        return f"unknown ({implementer} part 0x{arm_part[1]:x})"
    if family is None:
        return "unknown"
    return f"unknown (family {family} model {model})"


def cpu_identity(cpuinfo: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Vendor, family, model, stepping and the microarchitecture they name."""
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    vendor = _first(entries, "vendor_id")
    family, model = _int(_first(entries, "cpu family")), _int(_first(entries, "model"))
    stepping = _int(_first(entries, "stepping"))
    arm_part = None
    implementer, part = _int(_first(entries, "CPU implementer")), _int(_first(entries, "CPU part"))
    if implementer is not None and part is not None:
        vendor = vendor or _ARM_IMPLEMENTERS.get(implementer, f"arm-0x{implementer:x}")
        family, model, arm_part = implementer, part, (implementer, part)
        stepping = _int(_first(entries, "CPU variant"))
    return {"vendor": vendor or "unknown", "family": family, "model": model,
            "stepping": stepping,
            "microarchitecture": microarchitecture(vendor, family, model, stepping, arm_part)}


def cache_sizes(cache_dir: Path = CACHE_DIR) -> dict[str, int]:
    """Bytes of L2 and L3 as CPU 0 sees them (per core for L2, per shared group for L3)."""
    out: dict[str, int] = {}
    for index in sorted(cache_dir.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction" or level not in ("2", "3"):
            continue
        match = re.fullmatch(r"(\d+)([KMG]?)", size)
        if match:
            scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]
            out[f"l{level}_bytes"] = int(match.group(1)) * scale
    return out


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def memory_class(gib: float | None) -> int | None:
    """Memory rounded to a power of two GiB: stable across small reporting differences."""
    if gib is None or not isinstance(gib, (int, float)) or math.isnan(gib) or gib <= 0:
        return None
    return 2 ** round(math.log2(gib))


def _proc_kib_field(path: str, field: str) -> int | None:
    """Bytes of a "Field:   N kB" line of a /proc file, or None where it is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int | None:
    """This process's resident-set high-water mark (VmHWM), or None where /proc lacks it."""
    return _proc_kib_field("/proc/self/status", "VmHWM")


def available_memory_bytes() -> int:
    return _proc_kib_field("/proc/meminfo", "MemAvailable") or 0


def package_versions() -> dict[str, str]:
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


def _slug_words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def slug(cpuinfo: list[dict[str, str]] | None = None, cores: int | None = None) -> str:
    """A file-name-safe machine name with its microarchitecture, e.g. ``amd-epyc-zen5-2c``."""
    entries = _cpuinfo() if cpuinfo is None else cpuinfo
    name = cpu_model(entries).lower()
    name = re.sub(r"\((r|tm)\)|cpu|processor|with .*|@.*|\d+-core", " ", name)
    ident = cpu_identity(entries)
    arch = ident["microarchitecture"]
    if arch.startswith("unknown"):
        arch = f"fam{ident['family']}-model{ident['model']}" if ident["family"] is not None \
            else "unknown-microarchitecture"
    cores = cores if cores is not None else physical_cores(entries)
    arch = re.sub(r"^Zen (\d)", r"Zen\1", arch)  # zen5, as people write it
    return f"{_slug_words(name) or 'cpu'}-{_slug_words(arch)}-{cores}c"


def fingerprint(block: dict[str, Any]) -> tuple:
    """What must match for two machine blocks to share a results file."""
    return (block.get("vendor"), block.get("family"), block.get("model"),
            block.get("physical_cores"), memory_class(block.get("memory_gib")))


def describe(block: dict[str, Any]) -> str:
    """The machine in words, for tables and the README, e.g.
    ``AMD EPYC, Zen 5 (family 26 model 2 stepping 1), 2 cores, VM``."""
    arch = block.get("microarchitecture") or "microarchitecture unknown"
    ident = ""
    if block.get("family") is not None:
        ident = f" (family {block['family']} model {block.get('model')}"
        ident += f" stepping {block['stepping']})" if block.get("stepping") is not None else ")"
    cores = block.get("physical_cores", "?")
    extras = []
    if block.get("smt") is True:
        extras.append("SMT on")
    if block.get("hypervisor") is True:
        extras.append("VM")
    tail = "".join(f", {e}" for e in extras)
    return f"{block.get('cpu', '?')}, {arch}{ident}, {cores} cores{tail}"


def capture() -> dict[str, Any]:
    entries = _cpuinfo()
    flags = cpu_flags(entries)
    cores, logical = physical_cores(entries), logical_cpus(entries)
    return {
        "slug": slug(entries, cores),
        "cpu": cpu_model(entries),
        **cpu_identity(entries),
        "physical_cores": cores,
        "logical_cpus": logical,
        "smt": logical > cores,
        "hypervisor": "hypervisor" in flags,
        **cache_sizes(),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
