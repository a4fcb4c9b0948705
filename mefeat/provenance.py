"""What made an output: mefeat's version and commit, Python, the libraries whose numbers it
depends on, the CPU's vector extensions and the compiled kernels.

:func:`environment` is the one record of it: ``mefeat env`` (and ``mefeat --version``) print
it, and every store, variant, training run (``run.json``, ``metrics.json``) and bench
(``environment.json``) keeps it, so a figure can always be traced to what produced it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mefeat import __version__
from mefeat._cpp import KERNELS, cpu_flags

# The libraries whose versions can change a number mefeat reports.
PACKAGES = ("numpy", "torch", "opencv-contrib-python-headless", "dlib-bin", "zarr",
            "scikit-learn", "scipy")

# The vector extensions that decide which kernels oneDNN, OpenCV and mefeat's own C++ take.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                     "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                     "amx_bf16", "amx_int8")


def versions() -> dict[str, str]:
    """mefeat, its commit, Python and the library versions (:data:`PACKAGES`)."""
    out = {"mefeat": __version__, "commit": git_commit(), "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment() -> dict[str, Any]:
    """:func:`versions`, the machine's CPU and vector extensions, torch's CPU kernel level
    (where torch is loaded) and the state of every compiled kernel declared so far."""
    flags = set(cpu_flags())
    cpu: dict[str, Any] = {
        "model": _cpu_model(), "cores": os.cpu_count(),
        "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
    }
    torch = sys.modules.get("torch")  # not imported for this: extract's workers never load it
    if torch is not None:
        cpu["torch_capability"] = torch.backends.cpu.get_cpu_capability()
        cpu["torch_threads"] = torch.get_num_threads()
    return {**versions(), "platform": platform.platform(), "cpu": cpu,
            "kernels": {what: k.status() for what, k in sorted(KERNELS.items())}}


def format_environment(env: dict[str, Any]) -> list[str]:
    """The record as lines for a terminal (``mefeat env``)."""
    lines = [f"mefeat {env['mefeat']} (commit {env['commit']})",
             f"python {env['python']} on {env['platform']}"]
    lines += [f"{name} {env[name]}" for name in PACKAGES]
    cpu = env["cpu"]
    lines.append(f"cpu {cpu['model']}, {cpu['cores']} cores; vector extensions: "
                 + (" ".join(cpu["vector_extensions"]) or "none known"))
    if "torch_capability" in cpu:
        lines.append(f"torch CPU kernels: {cpu['torch_capability']}, "
                     f"{cpu['torch_threads']} threads")
    for what, status in env["kernels"].items():
        lines.append(f"kernel {what}: {status}")
    return lines


@functools.cache
def git_commit() -> str:
    """The commit of the mefeat checkout this code runs from (``-dirty`` with uncommitted
    changes to tracked files), or ``unknown`` (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10)
        # Only mefeat's own repository: a venv inside another project's checkout is not it.
        if top.returncode or not (Path(top.stdout.strip()) / "mefeat" / "__init__.py"
                                  ).resolve() == here / "__init__.py":
            return "unknown"
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=10).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def file_sha256(path: str | os.PathLike | None) -> str | None:
    """The SHA-256 of an input file (an annotation sheet, a CSV), for a store's config."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
