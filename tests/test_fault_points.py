"""Crash safety at every write step: the run is stopped at each fault point of the store's
writer (``mefeat.faults``), then resumed; the resumed store equals an uninterrupted run's
array for array, no done sample is incomplete, and no done sample is recomputed.

Each point is hit in-process (an exception) with two samples already done, and a real
SIGKILL of a ``mefeat extract`` subprocess lands at each kind of point (store and variant
creation, frames, a map, the done flag, the status). The points are the ones an
uninterrupted run reaches (recorded), so a new write step is covered by construction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _stores import store_arrays

from mefeat.demo import build_demo
from mefeat.errors import StoreError
from mefeat.faults import ENV, InjectedFault, armed, recording
from mefeat.run.extract import extract
from mefeat.store import FeatureStore

SIZE = 64
N = 4  # 2 subjects × 2 clips
MAPS = ("flow_oa", "flow_ao", "strain_oa", "strain_ao", "mag_oa", "mag_ao", "dir_oa", "dir_ao")
# Every write step of an extraction, in the order a sample reaches them.
POINTS = ("store:create", "variant:create", "frames:before", "frames:landmarks", "frames:done",
          *(f"sample:{m}:{w}" for m in MAPS for w in ("before", "after")),
          "sample:keyframes:before", "sample:done:before", "sample:done:after",
          "status:before", "status:after")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("points") / "demo", subjects=2, clips=2)


def _extract(demo, store):
    return extract(demo.root, dataset="casme2", annotations=demo.annotations, store=store,
                   size=SIZE, progress=False)


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    with recording() as reached:
        summary = _extract(demo, store)
    assert len(summary.done) == N and not summary.failed
    return store, store_arrays(store), list(reached)


def test_every_write_step_is_a_fault_point(reference):
    _, _, reached = reference
    assert set(reached) == set(POINTS)
    # once for the store and the variant, once a sample for the rest
    assert {p: reached.count(p) for p in POINTS} == {
        p: 1 if p.endswith(":create") else N for p in POINTS}


def _at(point: str) -> int:
    """Stop at the third sample's step (two samples done before), or the only time."""
    return 1 if point.endswith(":create") else 3


def _files(store: Path, index: int, key: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file holding sample ``index``: a rewrite replaces them."""
    out = {}
    places = [p / "c" / str(index) for p in (store / "features" / "gt").iterdir() if p.is_dir()]
    places.append(store / "frames" / key)
    for place in places:
        for f in [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]:
            st = f.stat()
            out[str(f.relative_to(store))] = (st.st_ino, st.st_mtime_ns)
    return out


def _done_after_crash(store: Path, ref: dict) -> tuple[set[int], dict]:
    """The crashed store's invariants; its done samples and their files."""
    try:
        fs = FeatureStore.open(store)
    except StoreError:  # stopped before the store got its attributes: nothing done
        return set(), {}
    keys = list(fs.column("key"))
    if "gt" not in fs.variants() or "settings" not in fs.variant("gt").attrs:
        assert set(fs.column("status")) == {"pending"}
        return set(), {}
    var = fs.variant("gt")
    done = var.done()
    status = fs.column("status")
    files = {}
    for i, key in enumerate(keys):
        if status[i] == "done":  # the status is written after the done flag
            assert done[i], key
        if not done[i]:
            continue
        row = var.read_sample(i, (*MAPS, "keyframes"))
        for name, value in row.items():  # complete, and the final values
            assert np.array_equal(value, ref[f"gt/{name}"][i]), (key, name)
        frames, landmarks = fs.read_frames(key)
        assert np.array_equal(frames, ref[f"frames/{key}"]), key
        assert np.array_equal(landmarks, ref[f"landmarks/{key}"]), key
        files.update(_files(store, i, key))
    return set(np.flatnonzero(done).tolist()), files


def _resume_and_compare(demo, store: Path, reference, done: set[int], files: dict) -> None:
    ref_store, ref, _ = reference
    summary = _extract(demo, store)
    assert (len(summary.done), len(summary.resumed), len(summary.failed)) == (
        N - len(done), len(done), 0)
    after = {}
    for i, key in enumerate(FeatureStore.open(store).column("key")):
        if i in done:
            after.update(_files(store, i, key))
    assert after == files, "a done sample was recomputed"
    x = store_arrays(store)
    assert x.keys() == ref.keys()
    for k in ref:
        assert np.array_equal(x[k], ref[k]), k


@pytest.mark.parametrize("point", POINTS)
def test_stopped_at_each_point_then_resumed(demo, reference, tmp_path, point):
    store = tmp_path / "s.zarr"
    with armed(point, at=_at(point)), pytest.raises(InjectedFault):
        _extract(demo, store)
    done, files = _done_after_crash(store, reference[1])
    expected = 0 if point.endswith(":create") else 2
    # the third sample is done only once its done flag is written
    if point in ("sample:done:after", "status:before", "status:after"):
        expected = 3
    assert len(done) == expected
    _resume_and_compare(demo, store, reference, done, files)


KILL_POINTS = ("store:create", "variant:create", "frames:landmarks", "sample:flow_ao:after",
               "sample:done:before", "sample:done:after", "status:before")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_a_point_then_resumed(demo, reference, tmp_path, point):
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "mefeat.cli.main", "extract", str(demo.root), "--dataset",
           "casme2", "--annotations", str(demo.annotations), "--store", str(store), "--size",
           str(SIZE)]
    env = {**os.environ, ENV: f"{point}@{_at(point)}:kill"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == -9, res.stdout + res.stderr  # killed there, not finished
    done, files = _done_after_crash(store, reference[1])
    assert len(done) == (0 if point.endswith(":create") else
                         3 if point in ("sample:done:after", "status:before") else 2)
    _resume_and_compare(demo, store, reference, done, files)
    shutil.rmtree(store)


# -- bench ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_store(demo, tmp_path_factory):
    store = tmp_path_factory.mktemp("bench") / "s.zarr"
    extract(demo.root, dataset="casme2", annotations=demo.annotations, store=store,
            label_scheme="casme2-5", size=SIZE, progress=False)
    return store


BENCH = ["bench", "--models", "ststnet", "--conditions", "gt", "--runs", "2", "--epochs", "1",
         "--no-tsne"]  # 2 runs × 2 folds = 4 jobs


def _bench_jobs(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (out / "jobs").rglob("*.json")} if (out / "jobs").exists() else {}


@pytest.mark.parametrize(("point", "before"), [("bench:job:start", 2),  # inside the 3rd job
                                               ("bench:job:written", 3)])  # between jobs
def test_bench_killed_inside_and_between_jobs_resumes(bench_store, tmp_path, point, before):
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "mefeat.cli.main", BENCH[0], str(bench_store), *BENCH[1:],
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, ENV: f"{point}@3:kill"})
    assert res.returncode == -9, res.stdout + res.stderr
    written = _bench_jobs(out)
    assert len(written) == before
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{4 - before} jobs run, {before} already done" in res.stdout
    after = _bench_jobs(out)
    assert len(after) == 4 and all(after[p] == t for p, t in written.items())
