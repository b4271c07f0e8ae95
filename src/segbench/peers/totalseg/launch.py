"""The command and its guard: the CT written as NIfTI, the tool's arguments, the process that
starts it (with the weight downloads replaced by a refusal), and its environment: the planted
home, caches in the run directory, proxies at a closed port and a ``sitecustomize`` that refuses
internet sockets and writes down every attempt."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from segbench.peers.totalseg.install import INSTALL_COMMAND, PeerUnavailable

EXECUTABLE = "TotalSegmentator"
CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a connect fails at once
NETWORK_LOG = "network_attempts.log"


def write_ct(hu_zyx: np.ndarray, spacing_zyx: Sequence[float], path: Path) -> Path:
    """Write a (z, y, x) HU volume as NIfTI, as a scanner export would hand it to the tool:
    int16, voxel axes (x, y, z) with the spacing on the diagonal of the affine."""
    import nibabel as nib

    data = np.ascontiguousarray(np.asarray(hu_zyx).transpose(2, 1, 0)).astype(np.int16)
    sz, sy, sx = (float(s) for s in spacing_zyx)
    image = nib.Nifti1Image(data, np.diag([sx, sy, sz, 1.0]))
    image.header.set_xyzt_units("mm")
    path = Path(path)
    nib.save(image, path)
    return path


def executable() -> str:
    """The console script of the installed tool (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name(EXECUTABLE)
    if beside.exists():
        return str(beside)
    found = shutil.which(EXECUTABLE)
    if found is None:
        raise PeerUnavailable(f"the {EXECUTABLE} command is not installed; run "
                              f"'{INSTALL_COMMAND}'")
    return found


# What the console script does (import the CLI's main and call it), after replacing the two
# functions that fetch weights by one that refuses: if the planted network were not where the
# tool looks, the run fails with a reason instead of downloading. Nothing else changes.
LAUNCHER = """\
import sys
import totalsegmentator.libs as libs

def _refuse(*args, **kwargs):
    raise RuntimeError("segbench peer run: the tool tried to download weights (planted network "
                       "not found); downloads are refused")

libs.download_url_and_unpack = _refuse
libs.download_model_with_license_and_unpack = _refuse
from totalsegmentator.bin.TotalSegmentator import main
sys.argv[0] = "TotalSegmentator"
sys.exit(main())
"""


def tool_args(ct: Path, out: Path, mode: str, ml: bool) -> list[str]:
    """The arguments users type, with the device said explicitly (the tool's default 'gpu'
    falls back to the CPU here anyway)."""
    args = ["-i", str(ct), "-o", str(out), f"--{mode}", "--device", "cpu"]
    return args + ["--ml"] if ml else args


def command(ct: Path, out: Path, mode: str, ml: bool, forbid_download: bool = True) -> list[str]:
    """The process to start: the console script, or (``forbid_download``) the same main()
    started by :data:`LAUNCHER` with the interpreter the console script runs on."""
    script = executable()
    if not forbid_download:
        return [script, *tool_args(ct, out, mode, ml)]
    python = Path(script).with_name("python")
    return [str(python if python.exists() else sys.executable), "-c", LAUNCHER,
            *tool_args(ct, out, mode, ml)]


SITECUSTOMIZE = '''\
"""Installed by segbench for a TotalSegmentator peer run: internet sockets are refused, and
every attempt is written down so the run's record can say whether the tool reached out."""
import os
import socket

_LOG = os.environ.get("SEGBENCH_NETWORK_LOG")
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _note(what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\\n")


def _guard(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _note(f"connect {address!r}")
        raise OSError("network access is blocked for this run (segbench peer)")


def connect(self, address):
    _guard(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _guard(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        _note(f"resolve {host!r}")
        raise socket.gaierror("network access is blocked for this run (segbench peer)")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
'''


def environment(home: Path, run_dir: Path, tmp: Path, block_network: bool = True
                ) -> dict[str, str]:
    """The command's environment: the planted home, caches under the run directory, temporary
    files in ``tmp`` (a short path: nnU-Net's worker processes put unix sockets there, whose
    paths may not exceed 107 bytes), proxies at a closed port, and (``block_network``) the
    socket guard."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOTALSEG_", "nnUNet_")) and k != "RESULTS_FOLDER"}
    env.update({
        "TOTALSEG_HOME_DIR": str(home), "HOME": str(home), "TMPDIR": str(tmp),
        "XDG_CACHE_HOME": str(run_dir / "cache"), "MPLCONFIGDIR": str(run_dir / "mpl"),
        "TORCHINDUCTOR_CACHE_DIR": str(run_dir / "cache" / "inductor"),
        "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY, "HTTP_PROXY": CLOSED_PROXY,
        "HTTPS_PROXY": CLOSED_PROXY, "ALL_PROXY": CLOSED_PROXY, "all_proxy": CLOSED_PROXY,
        "NO_PROXY": "", "no_proxy": "",
        "SEGBENCH_NETWORK_LOG": str(run_dir / NETWORK_LOG),
    })
    if block_network:
        guard = run_dir / "guard"
        guard.mkdir(parents=True, exist_ok=True)
        (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(guard)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env
