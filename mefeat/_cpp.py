"""Small C++ kernels built on first use and cached.

mefeat's compiled kernels are optional: each caller keeps a pure-library path (PyTorch
operators, OpenCV) and takes the kernel when it can be built. ``MEFEAT_CPU_KERNELS=0``
turns every kernel off.

Two kinds:

- :func:`load_kernel`: a PyTorch extension (``torch.utils.cpp_extension``) for kernels on
  tensors, with autograd (STSTNet's training stage).
- :func:`load_library`: a plain C ABI shared library for kernels on numpy arrays, called
  with ``ctypes``. Processes that never use torch (``extract``'s workers) do not import it
  for them.

Both are compiled with ``-march=native``: a build is specific to the CPU, so its name
carries a hash of the source, the flags and the CPU's feature flags (an edited source is
rebuilt, and a cache shared with another machine never hands it a binary for another CPU).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

_log = logging.getLogger(__name__)

_FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512"]


def kernels_enabled() -> bool:
    return os.environ.get("MEFEAT_CPU_KERNELS", "1") != "0"


def _cpu_flags() -> str:
    if not os.path.exists("/proc/cpuinfo"):
        return ""
    with open("/proc/cpuinfo") as f:
        return next((ln for ln in f if ln.startswith("flags")), "")


def _build_name(source: Path, flags: list[str]) -> str:
    digest = hashlib.sha1(
        source.read_bytes() + " ".join(flags).encode() + _cpu_flags().encode()
    ).hexdigest()[:12]
    return f"mefeat_{source.stem}_{digest}"


def _unavailable(what: str, exc: BaseException) -> None:
    _log.warning("%s: C++ kernel unavailable (%s); using the library path", what,
                 str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@functools.cache
def load_kernel(source: Path, what: str, extra_flags: tuple[str, ...] = ()) -> ModuleType | None:
    """The PyTorch extension module built from ``source``, or None (logged once, naming
    ``what``) where kernels are off or it cannot be built (no compiler, ninja or headers)."""
    if not kernels_enabled():
        return None
    flags = [*_FLAGS, *extra_flags]
    try:
        from torch.utils.cpp_extension import load

        return load(name=_build_name(source, flags), sources=[str(source)],
                    extra_cflags=flags, verbose=False)
    except Exception as exc:
        _unavailable(what, exc)
        return None


def cache_dir() -> Path:
    """Where built libraries are kept: ``$MEFEAT_CACHE``, else ``$XDG_CACHE_HOME/mefeat``,
    else ``~/.cache/mefeat``."""
    if os.environ.get("MEFEAT_CACHE"):
        return Path(os.environ["MEFEAT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mefeat"


@functools.cache
def load_library(source: Path, what: str,
                 extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The shared library built from ``source`` (C ABI) by ``$CXX`` (default ``c++``), or
    None (logged once, naming ``what``) where kernels are off or it cannot be built."""
    if not kernels_enabled():
        return None
    flags = [*_FLAGS, *extra_flags]
    try:
        target = cache_dir() / "kernels" / f"{_build_name(source, flags)}.so"
        if not target.is_file():
            _compile(source, target, flags)
        try:
            return ctypes.CDLL(str(target))
        except OSError:  # a damaged file in the cache (a full disk, a copy cut short)
            _compile(source, target, flags)
            return ctypes.CDLL(str(target))
    except Exception as exc:
        _unavailable(what, exc)
        return None


def _compile(source: Path, target: Path, flags: list[str]) -> None:
    cxx = shlex.split(os.environ.get("CXX") or "c++")  # may carry a launcher: "ccache g++"
    if shutil.which(cxx[0]) is None:
        raise RuntimeError(f"no C++ compiler ({cxx[0]!r} not found)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: processes that build at the same time
    # each rename a complete library, and none loads a half-written one.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([*cxx, *flags, "-shared", "-fPIC", "-std=c++17", str(source),
                               "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cxx)} failed on {source.name}: {proc.stderr.strip()}")
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would hide it from other users of a shared cache
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
