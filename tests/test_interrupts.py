"""Ctrl-C and SIGTERM: one line, exit 130 / 143, no traceback from any process or thread,
and the next run of the same command completes with the numbers of an uninterrupted one.

The default suite interrupts each command at a few moments; ``-m slow`` at ten each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _stores import demo_store, official_subset, store_arrays

from mefeat.store import FeatureStore
from mefeat.store.layout import is_store

# Ctrl-C as a terminal delivers it: a suite started in the background (`make test &`)
# hands its children SIGINT ignored, which Python (rightly) keeps.
MAIN = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from mefeat.cli.main import main; sys.argv[0] = 'mefeat'; main()")


def _start(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", MAIN, *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _interrupt(args, cwd: Path, after: float, sig=signal.SIGINT,
               once: Path | None = None) -> tuple[int, str]:
    """Run, and send ``sig`` ``after`` seconds from the start (or, with ``once``, from the
    moment that path appears: a command's interpreter start-up and imports vary with the
    machine's load by as much as a short command's own work takes)."""
    proc = _start(args, cwd)
    if once is not None:
        while not once.exists() and proc.poll() is None:
            time.sleep(0.005)
    time.sleep(after)
    if proc.poll() is None:
        proc.send_signal(sig)
    return _finish(proc)


def _appears(proc: subprocess.Popen, path: Path) -> tuple[float, float]:
    """Seconds from now until ``path`` appears, and until ``proc`` ends."""
    t0 = time.perf_counter()
    while not path.exists() and proc.poll() is None:
        time.sleep(0.005)
    seen = time.perf_counter() - t0
    proc.communicate(timeout=600)
    return seen, time.perf_counter() - t0


def _messages(stderr: str) -> list[str]:
    """stderr without the progress bars (tqdm redraws a line with carriage returns)."""
    lines = [line.split("\r")[-1].strip() for line in stderr.split("\n")]
    return [line for line in lines if line and "|" not in line]


def _check_interrupted(code: int, err: str, sig=signal.SIGINT) -> bool:
    """True if the run was interrupted (it may have finished first); its output is clean."""
    assert "Traceback" not in err and "Task was destroyed" not in err, err[-3000:]
    if code == 0:
        return False
    assert code == (130 if sig == signal.SIGINT else 143), err[-2000:]
    msgs = _messages(err)
    assert len(msgs) <= 3, msgs
    assert msgs[-1].startswith("mefeat: interrupted ("), msgs
    assert msgs[-1].endswith(("; the same command goes on from there",  # what was kept
                              "run the command again")), msgs  # nothing kept yet
    return True


def _moments(duration: float, count: int) -> list[float]:
    """``count`` moments spread over a run of ``duration`` seconds (imports included)."""
    return list(np.linspace(0.15, 0.9, count) * duration)


@pytest.fixture(scope="module")
def official(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    official_subset(shared_data / "features" / "cde28_htnet", root / "cde28_htnet", 16)
    return root / "cde28_htnet"


def _import_args(folder, store):
    return ["import-features", folder, "--format", "htnet", "--store", store]


def _interrupted_imports(official, tmp_path, count: int):
    whole = tmp_path / "whole.zarr"
    code, err = _finish(_start(_import_args(official, whole), tmp_path))
    assert code == 0, err
    # Timed on a second, warm run (the first of a fresh checkout also compiles mefeat's
    # bytecode), from the moment its store appears: the interpreter's start-up before it
    # varies with the machine's load by as much as the import of 16 samples takes (about
    # 0.3 s and 0.5-0.8 s on an idle 2-core machine), so moments timed from the start could
    # all land before the store or after the end (it happened in a fresh-clone run).
    warm = _start(_import_args(official, tmp_path / "warm.zarr"), tmp_path)
    seen, ended = _appears(warm, tmp_path / "warm.zarr")
    assert warm.returncode == 0
    expected = store_arrays(whole)
    interrupted = 0
    for k, after in enumerate(_moments(ended - seen, count)):
        store = tmp_path / f"s{k}.zarr"
        code, err = _interrupt(_import_args(official, store), tmp_path, after, once=store)
        if _check_interrupted(code, err) and is_store(str(store)):
            interrupted += 1
            fs = FeatureStore.open(store)  # counts agree with the variant, resumed or not
            status = fs.column("status")
            if "official-htnet" in fs.variants():
                assert (fs.variant("official-htnet").done() == (status == "done")).all()
            else:  # interrupted while the variant was being made: nothing of it is done
                assert not (status == "done").any()
        code, err = _finish(_start(_import_args(official, store), tmp_path))
        assert code == 0, err
        again = store_arrays(store)
        assert again.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(again[name], expected[name], err_msg=name)
    return interrupted


def _train_args(store, out):
    return ["train", "--model", "ststnet", "--store", store, "--epochs", 150, "--workers", 2,
            "--out", out]


def _interrupted_trainings(tmp_path, count: int):
    store = demo_store(tmp_path, subjects=4, clips=3, size=64)
    t0 = time.perf_counter()
    code, err = _finish(_start(_train_args(store, tmp_path / "whole"), tmp_path))
    assert code == 0, err
    duration = time.perf_counter() - t0
    expected = (tmp_path / "whole" / "predictions.csv").read_bytes()
    interrupted = 0
    for k, after in enumerate(_moments(duration, count)):
        out = tmp_path / f"r{k}"
        code, err = _interrupt(_train_args(store, out), tmp_path, after)
        interrupted += _check_interrupted(code, err)
        code, err = _finish(_start(_train_args(store, out), tmp_path))
        assert code == 0, err
        assert (out / "predictions.csv").read_bytes() == expected
    return interrupted


def test_ctrl_c_in_import_features_then_the_same_command_finishes(official, tmp_path):
    assert _interrupted_imports(official, tmp_path, 3) >= 1


def test_ctrl_c_in_train_then_the_same_command_finishes(tmp_path):
    assert _interrupted_trainings(tmp_path, 2) >= 1


def test_sigterm_stops_train_with_143_and_one_line(tmp_path):
    store = demo_store(tmp_path, subjects=3, clips=2, size=64)
    args = ["train", "--model", "ststnet", "--store", store, "--epochs", 3000, "--workers",
            1, "--out", tmp_path / "run"]
    code, err = _interrupt(args, tmp_path, 6.0, signal.SIGTERM)
    assert _check_interrupted(code, err, signal.SIGTERM)
    assert "mefeat: interrupted (SIGTERM)" in err and "folds are kept in" in err


@pytest.mark.slow
def test_ten_moments_of_ctrl_c_in_import_features(official, tmp_path):
    assert _interrupted_imports(official, tmp_path, 10) >= 5


@pytest.mark.slow
def test_ten_moments_of_ctrl_c_in_train(tmp_path):
    assert _interrupted_trainings(tmp_path, 10) >= 5


@pytest.mark.parametrize("quiet", [False, True])
def test_semaphores_left_by_an_interrupt_are_removed_without_a_warning(quiet):
    # What an interrupted run leaves (a spawn pool's semaphores, os._exit(130) as main()
    # leaves): without mefeat's filter the resource tracker warns after the one line.
    code = ("import os, multiprocessing as mp\n"
            "from mefeat.cli.main import quiet_resource_tracker\n"
            + ("quiet_resource_tracker()\n" if quiet else "")
            + "locks = [mp.get_context('spawn').Lock() for _ in range(3)]\n"
            "os._exit(130)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 130
    assert ("leaked semaphore" in res.stderr) is not quiet, res.stderr


def test_an_interrupt_in_a_finaliser_is_delivered_after_the_hook():
    # A Ctrl-C that lands in a finaliser reaches sys.unraisablehook; raised again inside the
    # hook it would be "ignored in sys.unraisablehook" with a traceback, and lost.
    code = ("import sys, time\n"
            "from mefeat.cli.main import _unraisable\n"
            "sys.unraisablehook = _unraisable\n"
            "class Finaliser:\n"
            "    def __del__(self):\n"
            "        raise KeyboardInterrupt\n"
            "try:\n"
            "    Finaliser()\n"
            "    time.sleep(5)\n"
            "    print('not interrupted')\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted after the hook')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.stdout.strip() == "interrupted after the hook", (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "ignored" not in res.stderr, res.stderr
