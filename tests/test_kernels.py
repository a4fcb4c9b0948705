"""Compiled kernels: built once, cached whole or not at all, never a hang.

A build killed at any moment (SIGKILL mid-compile) leaves nothing that blocks or breaks the
next load; a process that waits for another one's build says so at once and gives up after
``MEFEAT_KERNEL_WAIT`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mefeat import _cpp

C_SOURCE = 'extern "C" int one() { return 1; }\n'
TORCH_SOURCE = """#include <torch/extension.h>
torch::Tensor twice(torch::Tensor x) { return x * 2; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("twice", &twice); }
"""

# Loads a kernel in a fresh process and prints what it computes (or "None").
LOAD = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from mefeat._cpp import Kernel
torch_ext = sys.argv[2] == "torch"
k = Kernel("test kernel", Path(sys.argv[1]), torch_extension=torch_ext)
m = k.load()
if m is None:
    print("None")
elif torch_ext:
    import torch
    print(int(m.twice(torch.ones(1)).item()))
else:
    print(m.one())
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEFEAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("MEFEAT_CPU_KERNELS", raising=False)
    _cpp.forget_loaded()
    yield tmp_path / "cache" / "kernels"
    _cpp.forget_loaded()


def _source(tmp_path: Path, text: str = C_SOURCE, name: str = "k.cpp") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _slow_compiler(tmp_path: Path) -> tuple[str, Path]:
    """A CXX that marks that it started, then sleeps before compiling: a build to kill."""
    marker = tmp_path / "compiling"
    script = tmp_path / "slow-cxx.sh"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 60\nexec c++ "$@"\n')
    script.chmod(0o755)
    return str(script), marker


def _load(source: Path, kind: str = "library", env: dict | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOAD, str(source), kind], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _kill_mid_build(source: Path, kind: str, tmp_path: Path) -> None:
    cxx, marker = _slow_compiler(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", LOAD, str(source), kind],
                            env={**os.environ, "CXX": cxx}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "the build ended before the compiler started"
        assert time.monotonic() < deadline, "the compiler never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the compiler it started lives on, orphaned
    proc.wait()


def test_no_compiler_or_kernels_off_gives_none_and_a_warning(tmp_path, cache, monkeypatch,
                                                              caplog):
    source = _source(tmp_path)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.WARNING, logger="mefeat._cpp"):
        kernel = _cpp.Kernel("test kernel", source)
        assert kernel.load() is None
    assert "test kernel: C++ kernel unavailable (no C++ compiler" in caplog.text
    assert kernel.status().startswith("unavailable: no C++ compiler")
    monkeypatch.setenv("MEFEAT_CPU_KERNELS", "0")
    monkeypatch.delenv("CXX")
    _cpp.forget_loaded()
    assert kernel.load() is None
    assert kernel.status() == "off (MEFEAT_CPU_KERNELS=0)"
    monkeypatch.delenv("MEFEAT_CPU_KERNELS")
    assert kernel.status() == "not built yet (built on first use)"
    lib = kernel.load()
    if lib is None:
        pytest.skip("no C++ compiler here")
    assert lib.one() == 1
    assert kernel.status() == "in use"
    assert sorted(p.name for p in cache.iterdir()) == [f"{kernel.name}.lock",
                                                        f"{kernel.name}.so"]  # no leftovers


def test_a_damaged_cached_library_is_rebuilt(tmp_path, cache):
    source = _source(tmp_path)
    kernel = _cpp.Kernel("test kernel", source)
    if kernel.load() is None:
        pytest.skip("no C++ compiler here")
    # a full disk, a copy cut short; put in place as a new file: truncating the file this
    # process has mapped (kernel.load() above) would end the process with SIGBUS later
    damaged = kernel.path.with_name("damaged.tmp")
    damaged.write_bytes(b"")
    os.replace(damaged, kernel.path)
    # in a fresh process: dlopen would hand this one the library it already holds; CXX may
    # carry a launcher's arguments
    out = _load(source, env={"CXX": "env c++"})
    assert out.stdout.strip() == "1", out.stderr
    assert kernel.path.stat().st_size > 0


def test_the_name_changes_with_the_source_and_flags(tmp_path):
    a = _cpp.Kernel("k", _source(tmp_path, C_SOURCE, "a.cpp"))
    b = _cpp.Kernel("k", _source(tmp_path, C_SOURCE + "// edited\n", "b.cpp"))
    c = _cpp.Kernel("k", a.source, ("-DX",))
    assert len({a.name.split("_")[-1], b.name.split("_")[-1], c.name.split("_")[-1]}) == 3


def test_a_library_build_killed_mid_compile_does_not_block_the_next(tmp_path, cache):
    source = _source(tmp_path)
    if _cpp.Kernel("test kernel", source).load() is None:
        pytest.skip("no C++ compiler here")
    _cpp.forget_loaded()
    for p in cache.iterdir():
        p.unlink()
    _kill_mid_build(source, "library", tmp_path)
    t0 = time.monotonic()
    out = _load(source, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
    assert time.monotonic() - t0 < 30
    assert "waiting" not in out.stderr  # the dead build's lock died with it
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed build's temporary file is gone


HOLD = """
import sys, time
from pathlib import Path
from mefeat._cpp import build_lock
with build_lock(Path(sys.argv[1]), "holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_waiting_process_says_what_it_waits_for_and_gives_up(tmp_path, cache):
    source = _source(tmp_path)
    kernel = _cpp.Kernel("test kernel", source)
    cache.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(kernel.path.with_suffix(".lock")),
                               "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        out = _load(source, env={"MEFEAT_KERNEL_WAIT": "2"}, timeout=60)
        took = time.monotonic() - t0
        assert out.stdout.strip() == "None"  # the library path, not a hang
        assert f"test kernel: waiting (at most 2 s) for process {holder.pid}" in out.stderr
        assert "test kernel: C++ kernel unavailable (process" in out.stderr
        assert 2 <= took < 20
    finally:
        holder.kill()
        holder.wait()
    # the holder died without letting go: its lock went with it
    out = _load(source, timeout=60)
    assert out.stdout.strip() in ("1", "None"), out.stderr
    assert "waiting" not in out.stderr


def test_a_process_waits_for_a_build_and_takes_its_result(tmp_path, cache):
    source = _source(tmp_path)
    kernel = _cpp.Kernel("test kernel", source)
    if kernel.load() is None:
        pytest.skip("no C++ compiler here")
    _cpp.forget_loaded()
    built = kernel.path.read_bytes()
    kernel.path.unlink()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(kernel.path.with_suffix(".lock")),
                               "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        loader = subprocess.Popen([sys.executable, "-c", LOAD, str(source), "library"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "waiting" in loader.stderr.readline()
        kernel.path.write_bytes(built)  # what the holder's build puts in place
    finally:
        holder.kill()
        holder.wait()
    out, err = loader.communicate(timeout=60)
    assert out.strip() == "1", err
    assert kernel.path.read_bytes() == built  # taken as it was, not built again


@pytest.mark.slow
def test_a_torch_extension_build_killed_mid_compile_does_not_block_the_next(tmp_path, cache):
    """The STSTNet kind of kernel (torch.utils.cpp_extension): about a minute of compiling."""
    source = _source(tmp_path, TORCH_SOURCE, "ext.cpp")
    _kill_mid_build(source, "torch", tmp_path)
    out = _load(source, "torch", timeout=300)
    assert out.stdout.strip() == "2", out.stderr
    assert "waiting" not in out.stderr
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []
