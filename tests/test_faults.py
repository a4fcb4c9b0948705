"""Crash safety of ``mefeat extract``: SIGKILL at random moments, resume, concurrent use.

Every test runs the real command in a subprocess on a small demo dataset (2 subjects ×
3 clips, 112 px faces) and compares stores array for array with an uninterrupted run.
After each kill, before resuming, the store must hold no sample marked done with
incomplete arrays, and the resume must not compute again what was done before the kill
(checked by the resume's counts and by the done samples' chunk files, which a second
computation would replace: zarr writes a chunk to a new file and renames it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _stores import store_arrays
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.demo import build_demo
from mefeat.errors import StoreError
from mefeat.store import FeatureStore

SIZE = 112
N = 6  # 2 subjects × 3 clips


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("faults") / "demo", subjects=2, clips=3)


def _command(demo, store: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "mefeat.cli.main", "extract", str(demo.root),
            "--dataset", "casme2", "--annotations", str(demo.annotations),
            "--store", str(store), "--size", str(SIZE), "--workers", str(workers)]


def _start(demo, store: Path, workers: int) -> subprocess.Popen:
    # A session of its own: the command and its pool workers form a process group whose id
    # is the command's pid, so the test can find (and clean up) exactly its own processes.
    return subprocess.Popen(_command(demo, store, workers), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies excluded)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the extraction's main process only, as the OOM killer or a crash would.

    Returns whether it was still running.
    """
    running = proc.poll() is None
    if running:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return running


def _reap(proc: subprocess.Popen) -> None:
    # Safety net for this test's own processes only, should workers outlive the kill.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _assert_same_store(a: Path, b: Path) -> None:
    x, y = store_arrays(a), store_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        assert np.array_equal(x[k], y[k]), k


def _chunk_files(store: Path, index: int, key: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file holding sample ``index``: its variant rows, frames."""
    out = {}
    var = store / "features" / "gt"
    places = [p / "c" / str(index) for p in var.iterdir() if p.is_dir()]
    places.append(store / "frames" / key)
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for f in files:
            st = f.stat()
            out[str(f.relative_to(store))] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    """An uninterrupted run of the command, and how long it took."""
    store = tmp_path_factory.mktemp("reference") / "ref.zarr"
    t0 = time.monotonic()
    res = subprocess.run(_command(demo, store, 1), capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert "done 6, already done 0, failed 0" in res.stdout
    fs = FeatureStore.open(store)
    assert fs.variant("gt").done().all() and list(fs.column("status")) == ["done"] * N
    return store, seconds, store_arrays(store)


def _check_after_kill(store: Path, ref: dict[str, np.ndarray]) -> set[int]:
    """The invariants of a killed store; returns the indices of the done samples."""
    try:
        fs = FeatureStore.open(store)
    except StoreError as exc:  # killed before the store got its attributes: nothing done
        assert "no mefeat store" in str(exc) or "creation was interrupted" in str(exc), exc
        return set()
    keys = list(fs.column("key"))
    status = fs.column("status")
    assert set(status) <= {"pending", "done"}  # nothing failed in this dataset
    if "gt" not in fs.variants() or "done" not in fs.group["features/gt"]:
        assert "done" not in set(status)
        return set()
    var = fs.variant("gt")
    done = var.done()
    for i, key in enumerate(keys):
        if status[i] == "done":  # the status comes after the done flag
            assert done[i], key
        if not done[i]:
            continue
        # a done sample has all its arrays, not the fill values: and they are the final ones
        kf = var.group["keyframes"][i]
        assert (kf >= 0).all(), key
        assert np.abs(var.group["flow_oa"][i]).max() > 0, key
        assert var.group["dir_oa"][i].any(), key
        for name in var.maps + ["keyframes"]:
            assert np.array_equal(var.group[name][i], ref[f"gt/{name}"][i]), (key, name)
        assert fs.has_frames(key), key
        frames, landmarks = fs.read_frames(key)
        assert np.array_equal(frames, ref[f"frames/{key}"]), key
        assert np.array_equal(landmarks, ref[f"landmarks/{key}"]), key
    return set(np.flatnonzero(done).tolist())


def _kill_and_resume(demo, reference, tmp_path, *, workers: int, kills: int, seed: int,
                     finish_each: bool) -> dict[str, int]:
    """Start, SIGKILL at random moments (resuming in between), then run to completion."""
    ref_store, seconds, ref = reference
    store = tmp_path / "killed.zarr"
    rng = random.Random(seed)
    stats = {"kills": 0, "finished_before_kill": 0, "done_at_kills": []}
    done_before: set[int] = set()
    files_before: dict[str, tuple[int, int]] = {}
    keys = list(FeatureStore.open(ref_store).column("key"))
    for _ in range(kills):
        proc = _start(demo, store, workers)
        # early in the remaining work: a resumed run has less left to do than the first
        time.sleep(rng.uniform(0.05, 0.6) * seconds)
        running = _kill(proc)
        try:
            stats["kills"] += running
            stats["finished_before_kill"] += not running
            done = _check_after_kill(store, ref)
            stats["done_at_kills"].append(len(done))
            assert done >= done_before, "a done sample was undone"
            files = {}
            for i in done:
                files.update(_chunk_files(store, i, keys[i]))
            unchanged = {k: v for k, v in files_before.items() if k in files}
            assert unchanged == {k: files[k] for k in unchanged}, "a done sample was rewritten"
            assert files_before.keys() <= files.keys()
            done_before, files_before = done, files
            # the pool's workers notice that their parent is gone and end
            deadline = time.monotonic() + 10
            while _group(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _group(proc.pid), f"processes {_group(proc.pid)} outlived the kill"
        finally:
            _reap(proc)
        if finish_each:  # resume to completion, compare, and start the next trial afresh
            _finish(demo, store, workers, done_before, files_before, keys)
            _assert_same_store(ref_store, store)
            shutil.rmtree(store)
            done_before, files_before = set(), {}
    if not finish_each:
        _finish(demo, store, workers, done_before, files_before, keys)
        _assert_same_store(ref_store, store)
    return stats


def _all_files(store: Path, keys: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for i, key in enumerate(keys):
        out.update(_chunk_files(store, i, key))
    return out


def _finish(demo, store, workers, done_before, files_before, keys) -> None:
    res = subprocess.run(_command(demo, store, workers), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.search(r"done (\d+), already done (\d+), failed (\d+)", res.stdout)
    assert m, res.stdout
    done, resumed, failed = map(int, m.groups())
    # what was done before the kill is reported as already done, and only that
    assert (done, resumed, failed) == (N - len(done_before), len(done_before), 0), res.stdout
    after = _all_files(store, keys)
    assert {k: after[k] for k in files_before} == files_before, "a done sample was recomputed"
    fs = FeatureStore.open(store)
    assert list(fs.column("status")) == ["done"] * N
    assert fs.variant("gt").done().all()


@pytest.mark.slow  # the deterministic kills of tests/test_fault_points.py run by default
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_at_random_moments_then_resume(demo, reference, tmp_path, workers):
    stats = _kill_and_resume(demo, reference, tmp_path, workers=workers, kills=3,
                             seed=100 + workers, finish_each=False)
    print(f"workers={workers}: {stats}")
    assert stats["kills"] >= 1  # at least one kill landed while the command ran


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_many_trials_each_resumed_to_completion(demo, reference, tmp_path, workers):
    stats = _kill_and_resume(demo, reference, tmp_path, workers=workers, kills=6,
                             seed=200 + workers, finish_each=True)
    print(f"workers={workers}: {stats}")
    assert stats["kills"] >= 3


def test_killed_between_done_flag_and_status(demo, reference, tmp_path):
    """The narrowest window: a sample's done flag is set, its status not yet."""
    ref_store, _, ref = reference
    store = tmp_path / "s.zarr"
    shutil.copytree(ref_store, store)
    FeatureStore.open(store, mode="r+").set_status(2, "pending")
    res = subprocess.run(_command(demo, store, 1), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "done 0, already done 6" in res.stdout, res.stdout
    _assert_same_store(ref_store, store)


def test_killed_while_creating_the_variant(demo, reference, tmp_path):
    """A variant gets its attributes last; one without them is made again, not refused."""
    ref_store, _, _ = reference
    store = tmp_path / "s.zarr"
    shutil.copytree(ref_store, store)
    fs = FeatureStore.open(store, mode="r+")
    keys = list(fs.column("key"))
    shutil.rmtree(store / "features" / "gt")
    grp = fs.group.require_group("features/gt")  # as left by a kill: two arrays, no attrs
    grp.create_array("keyframes", shape=(N, 3), dtype="int32", chunks=(1, 3), fill_value=-1)
    grp.create_array("flow_oa", shape=(N, 2, SIZE, SIZE), dtype="float32",
                     chunks=(1, 2, SIZE, SIZE))
    frames_before = {k: v for i, k in enumerate(keys) for k, v in
                     _chunk_files(store, i, k).items() if k.startswith("frames/")}
    res = subprocess.run(_command(demo, store, 1), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "done 6, already done 0, failed 0" in res.stdout
    _assert_same_store(ref_store, store)
    # the aligned frames were re-used, not detected and written again
    frames_after = {k: v for i, k in enumerate(keys) for k, v in
                    _chunk_files(store, i, k).items() if k.startswith("frames/")}
    assert frames_after == frames_before


def test_killed_while_creating_the_store(demo, reference, tmp_path):
    """A store killed before its attributes were written is started again."""
    import zarr

    ref_store, _, _ = reference
    store = tmp_path / "s.zarr"
    group = zarr.open_group(str(store), mode="w")
    group.require_group("samples").create_array("key", shape=(3,), dtype=str)
    res = subprocess.run(_command(demo, store, 1), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    _assert_same_store(ref_store, store)


def _wait_for_lock(store: Path, pid: int, timeout: float = 120) -> None:
    lock = store / ".mefeat-writer.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.is_file() and lock.read_text().strip() == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"{pid} never took the writer lock of {store}")


def test_second_writer_is_refused_and_readers_see_only_done_samples(demo, reference, tmp_path):
    ref_store, _, ref = reference
    store = tmp_path / "s.zarr"
    first = _start(demo, store, 2)
    try:
        _wait_for_lock(store, first.pid)
        # The writer (its process group: the command and its pool) runs in slices of 0.05 s
        # and is stopped while the second writer and each reader look, so they look during
        # the run however loaded the machine is; a stopped writer is only a slow one.
        os.killpg(first.pid, signal.SIGSTOP)
        # another process: refused with a message that names the store and the holder
        second = subprocess.run(_command(demo, store, 1), capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 1
        assert f"another mefeat process (pid {first.pid}) is writing this store" in second.stderr
        assert str(store) in second.stderr and "Traceback" not in second.stderr
        # and this process too (the lock is per open file, not per process)
        with pytest.raises(StoreError, match="another mefeat process"):
            FeatureStore.create_or_resume(store, [], {})
        # readers during the run see only samples whose arrays are complete
        runner = CliRunner()
        seen, looks, midway = set(), 0, 0
        while first.poll() is None:
            looks += 1
            res = runner.invoke(cli, ["inspect", str(store), "--json"])
            if res.exit_code == 0:
                info = json.loads(res.output)
                assert info["samples"] == N
                assert 0 <= info["variants"].get("gt", {"done": 0})["done"] <= N
            else:  # only before the store exists
                assert "no mefeat store" in res.output or "creation was interrupted" in res.output
            try:
                var = FeatureStore.open(store).variant("gt")
                idx, maps = var.read(["flow_oa", "dir_ao", "keyframes"])
            except StoreError:
                idx = np.array([], dtype=int)
            for j, i in enumerate(idx):
                for name, arr in maps.items():
                    assert np.array_equal(arr[j], ref[f"gt/{name}"][i]), (i, name)
            seen.update(idx.tolist())
            midway += 0 < len(idx) < N
            os.killpg(first.pid, signal.SIGCONT)
            time.sleep(0.05)
            # the main process is not reaped before the next poll(): its group still exists
            os.killpg(first.pid, signal.SIGSTOP)
        # pool workers still exiting may have been stopped, holding the output pipes open
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert "done 6, already done 0, failed 0" in out
        # the writer ran for seconds, so it was stopped and looked at many times, some of
        # them with part of the samples done
        assert looks >= 3 and midway >= 1
        print(f"reader looked {looks} times ({midway} midway), saw {len(seen)} done samples "
              "during the run")
    finally:
        _reap(first)  # the whole group, stopped or not (nobody, once the run has finished)
        first.wait(timeout=60)
    # the refused writer changed nothing: the store is the uninterrupted one
    _assert_same_store(ref_store, store)
    # and after the run the lock is free again
    FeatureStore.create_or_resume(store, FeatureStore.open(store).samples(),
                                  FeatureStore.open(store).config).close()
