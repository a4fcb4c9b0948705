"""Small C++ kernels built on first use and cached, safely.

mefeat's compiled kernels are optional: each caller keeps a pure-library path (PyTorch
operators, OpenCV) and takes the kernel when it can be built. ``MEFEAT_CPU_KERNELS=0``
turns every kernel off.

A :class:`Kernel` is declared once, beside the code that calls it, and registered
(:data:`KERNELS`, which ``mefeat env`` lists). Two kinds:

- a PyTorch extension (``torch_extension=True``, built with ``torch.utils.cpp_extension``)
  for kernels on tensors, with autograd (STSTNet's training stage);
- a plain C ABI shared library, called with ``ctypes``, for kernels on numpy arrays
  (TV-L1); processes that never use torch (``extract``'s workers) do not import it for them.

Both are compiled with ``-march=native``: a build is specific to the CPU, so its file name
carries a hash of the source, the flags and the CPU's feature flags, and for a PyTorch
extension of the torch and Python versions it links against (an edited source or another
torch is rebuilt; a cache shared with another machine never hands it a foreign binary).

Builds cannot hang or leave a broken cache, whatever kills them:

- one process builds a kernel at a time, under an ``fcntl.flock`` on ``NAME.lock``, which
  the kernel releases when the process that holds it dies, even by SIGKILL (unlike the
  ``lock`` file of ``torch.utils.cpp_extension``, which stays and makes every later build
  wait forever);
- a process that has to wait says, at once, which kernel and which process it waits for, and
  waits at most ``MEFEAT_KERNEL_WAIT`` seconds (default 600), then takes the library path;
- every build happens in a private temporary folder (or file) and its result is renamed
  into place, so the cache holds a whole kernel or none; what a killed build left behind
  is removed by the next build, and a cached file that does not load is rebuilt once.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised (each still renames into place)
    fcntl = None  # type: ignore[assignment]

_log = logging.getLogger(__name__)

_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512")

KERNELS: dict[str, Kernel] = {}
"""Every declared kernel, by what it is for (``"TV-L1"``, ``"STSTNet"``)."""

# Per process: what loading each kernel gave (the module or library, or the reason it is
# unavailable), so a kernel is built or loaded at most once per process.
_LOADED: dict[str, Any] = {}


def kernels_enabled() -> bool:
    return os.environ.get("MEFEAT_CPU_KERNELS", "1") != "0"


def cache_dir() -> Path:
    """Where built kernels are kept: ``$MEFEAT_CACHE``, else ``$XDG_CACHE_HOME/mefeat``,
    else ``~/.cache/mefeat``."""
    if os.environ.get("MEFEAT_CACHE"):
        return Path(os.environ["MEFEAT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mefeat"


def wait_seconds() -> float:
    """How long a process waits for another one's build of the same kernel."""
    return float(os.environ.get("MEFEAT_KERNEL_WAIT", "600"))


def cpu_flags() -> list[str]:
    """The CPU's feature flags (``/proc/cpuinfo``), empty where unknown."""
    if not os.path.exists("/proc/cpuinfo"):
        return []
    with open("/proc/cpuinfo") as f:
        line = next((ln for ln in f if ln.startswith("flags")), "")
    return line.partition(":")[2].split()


class KernelUnavailable(RuntimeError):
    """A kernel could not be built or loaded (the caller takes its library path)."""


@dataclass(frozen=True)
class Kernel:
    """A C++ source file built on first use.

    Attributes:
        what: what it is for, in messages and ``mefeat env`` (``"TV-L1"``).
        source: the ``.cpp`` file.
        extra_flags: compiler flags after mefeat's ``-O3 -march=native ...``.
        torch_extension: a PyTorch extension module (else a C ABI library for ctypes).
    """

    what: str
    source: Path
    extra_flags: tuple[str, ...] = ()
    torch_extension: bool = False

    @property
    def flags(self) -> list[str]:
        return [*_FLAGS, *self.extra_flags]

    @cached_property
    def name(self) -> str:
        """The build's name: the source's stem and a hash of all that makes the binary."""
        parts = [self.source.read_bytes(), " ".join(self.flags).encode(),
                 " ".join(cpu_flags()).encode()]
        if self.torch_extension:
            from importlib.metadata import version

            parts += [version("torch").encode(), platform.python_version().encode()]
        digest = hashlib.sha1(b"\0".join(parts)).hexdigest()[:12]
        return f"mefeat_{self.source.stem}_{digest}"

    @property
    def path(self) -> Path:
        """The built file in the cache."""
        return cache_dir() / "kernels" / f"{self.name}.so"

    def status(self) -> str:
        """``in use`` (loaded by this process), ``built``, ``not built yet``, ``off`` or
        ``unavailable: why``."""
        if not kernels_enabled():
            return "off (MEFEAT_CPU_KERNELS=0)"
        loaded = _LOADED.get(self.what)
        if isinstance(loaded, KernelUnavailable):
            return f"unavailable: {loaded}"
        if loaded is not None:
            return "in use"
        return "built" if self.path.is_file() else "not built yet (built on first use)"

    def load(self) -> Any:
        """The extension module (or ``ctypes.CDLL``), built if needed; ``None`` (logged once,
        naming ``what``) where kernels are off or it cannot be built or loaded."""
        if not kernels_enabled():
            return None
        if self.what not in _LOADED:
            try:
                _LOADED[self.what] = self._build_and_load()
            except Exception as exc:  # no compiler, ninja or headers, a timeout: library path
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                _LOADED[self.what] = KernelUnavailable(first or type(exc).__name__)
                _log.warning("%s: C++ kernel unavailable (%s); using the library path",
                             self.what, _LOADED[self.what])
        loaded = _LOADED[self.what]
        return None if isinstance(loaded, KernelUnavailable) else loaded

    # -- building ---------------------------------------------------------------------

    def _build_and_load(self) -> Any:
        target = self.path
        if target.is_file():
            with contextlib.suppress(ImportError, OSError):  # damaged: rebuilt below
                return self._open(target)
        with build_lock(target.with_suffix(".lock"), self.what):
            _remove_leftovers(target)
            if target.is_file():  # built by the process we waited for, or damaged
                with contextlib.suppress(ImportError, OSError):
                    return self._open(target)
            if self.torch_extension:
                self._build_extension(target)
            else:
                self._build_library(target)
        return self._open(target)

    def _open(self, path: Path) -> Any:
        if not self.torch_extension:
            return ctypes.CDLL(str(path))
        import torch  # noqa: F401  (the extension links against libtorch)

        spec = importlib.util.spec_from_file_location(self.name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not an extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def _build_library(self, target: Path) -> None:
        cxx = shlex.split(os.environ.get("CXX") or "c++")  # may carry a launcher: "ccache g++"
        if shutil.which(cxx[0]) is None:
            raise KernelUnavailable(f"no C++ compiler ({cxx[0]!r} not found)")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}-", suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run([*cxx, *self.flags, "-shared", "-fPIC", "-std=c++17",
                                   str(self.source), "-o", tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                raise KernelUnavailable(
                    f"{' '.join(cxx)} failed on {self.source.name}: {proc.stderr.strip()}")
            os.chmod(tmp, 0o755)  # mkstemp's 0600 would hide it from a shared cache's users
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _build_extension(self, target: Path) -> None:
        from torch.utils.cpp_extension import load

        # A private build folder: torch's own lock file in it can never block anyone else.
        build = tempfile.mkdtemp(prefix=f".{self.name}-", dir=target.parent)
        try:
            load(name=self.name, sources=[str(self.source)], extra_cflags=self.flags,
                 build_directory=build, verbose=False)
            built = Path(build) / f"{self.name}.so"
            os.chmod(built, 0o755)
            os.replace(built, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)


def register_kernel(kernel: Kernel) -> Kernel:
    """Declare ``kernel`` (listed by ``mefeat env``); returns it."""
    KERNELS[kernel.what] = kernel
    return kernel


def forget_loaded() -> None:
    """Forget what this process loaded (tests: load again under other settings)."""
    _LOADED.clear()


@contextlib.contextmanager
def build_lock(path: Path, what: str, *, wait: float | None = None) -> Iterator[None]:
    """Hold the build lock ``path`` (an ``fcntl.flock``, released when this process ends,
    however it ends). Waiting for another process, say so at once, and give up after
    ``wait`` seconds (default :func:`wait_seconds`) with :class:`KernelUnavailable`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    wait = wait_seconds() if wait is None else wait
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the compilers
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            _log.warning("%s: waiting (at most %.0f s) for process %s, which is building this "
                         "C++ kernel (lock %s)", what, wait, holder, path)
            deadline = time.monotonic() + wait
            while True:
                time.sleep(0.1)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise KernelUnavailable(
                            f"process {holder} still builds it after {wait:.0f} s "
                            f"(lock {path}; MEFEAT_KERNEL_WAIT sets the wait)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_leftovers(target: Path) -> None:
    """Temporary files and folders of builds of ``target`` that died (we hold its lock, so
    no live build of it owns them)."""
    for p in target.parent.glob(f".{target.stem}-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
