"""Crash safety at every write step: the run is stopped at each fault point of the store's
writer (``mefeat.faults``), then resumed; the resumed store equals an uninterrupted run's
array for array, no done sample is incomplete, and no done sample is recomputed.

Each point is hit in-process (an exception) with two samples already done, and a real
SIGKILL of a ``mefeat extract`` subprocess lands at each kind of point (store and variant
creation, frames, a map, the done flag, the status; every point with ``-m slow``). The
points are the ones an uninterrupted run reaches (recorded), so a new write step is covered
by construction. The same for a variant's failure reason, for ``import-features`` (each
point, raised and SIGKILLed) and for ``bench`` (killed inside and between jobs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _stores import add_short_clip, store_arrays

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


@pytest.mark.parametrize("point", [
    *KILL_POINTS,  # one of each kind in the default suite; every other point in the slow one
    *(pytest.param(p, marks=pytest.mark.slow) for p in POINTS if p not in KILL_POINTS)])
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
                         3 if point in ("sample:done:after", "status:before", "status:after")
                         else 2)
    _resume_and_compare(demo, store, reference, done, files)
    shutil.rmtree(store)


def test_stopped_before_a_variant_failure_is_written_then_resumed(demo, tmp_path):
    # A clip too short to spot an apex in fails in the spot variant alone (write_failure):
    # stopped just before that reason is written, then resumed, the store equals an
    # uninterrupted run's.
    root = tmp_path / "CASME2"
    shutil.copytree(demo.root, root)
    ann = root / demo.annotations.name
    add_short_clip(root, ann)

    def run(store):
        return extract(root, dataset="casme2", annotations=ann, store=store, size=SIZE,
                       keyframes=("gt", "spot:flowpeak"), progress=False)

    with recording() as reached:
        ref = run(tmp_path / "ref.zarr")
    assert reached.count("failure:before") == 1 and len(ref.failed) == 1, ref.lines()
    with armed("failure:before"), pytest.raises(InjectedFault):
        run(tmp_path / "s.zarr")
    again = run(tmp_path / "s.zarr")
    assert again.failed.keys() == ref.failed.keys()
    x, y = store_arrays(tmp_path / "s.zarr"), store_arrays(tmp_path / "ref.zarr")
    assert x.keys() == y.keys()
    for k in y:
        assert np.array_equal(x[k], y[k]), k


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


# -- import-features -------------------------------------------------------------------------

IMPORT_ROWS = [("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub01", "EP19_05f", 0),
               ("samm", "006", "006_1_2", 2), ("smic", "s1", "s1_ne_01", 1)]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A small official CausalNet folder with one sample's PNG missing (a failed sample),
    and the store an uninterrupted import makes of it, with the points it reached."""
    import csv

    import cv2

    from mefeat.datasets.official import CSV_NAME
    from mefeat.run.import_features import import_features

    folder = tmp_path_factory.mktemp("official")
    rng = np.random.default_rng(0)
    with (folder / CSV_NAME).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "sub", "filename_o", "label", "apex", "imagename",
                    "sub_filename"])
        for ds, sub, clip, label in IMPORT_ROWS:
            w.writerow([ds, sub, clip, label, "", f"{sub}_{clip}.jpg", ""])
            for suffix in ("", "_1", "_2", "_3"):
                cv2.imwrite(str(folder / f"{sub}_{clip}{suffix} .png"),
                            rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    (folder / "006_006_1_2_3 .png").unlink()
    store = tmp_path_factory.mktemp("official-ref") / "ref.zarr"
    with recording() as reached:
        summary = import_features(folder, fmt="causalnet", store=store)
    assert (len(summary.done), len(summary.failed)) == (3, 1)
    return folder, store_arrays(store), list(reached)


IMPORT_POINTS = ("store:create", "imported:create", "rows:image:before", "rows:image_ao:before",
                 "rows:dir_oa:before", "rows:dir_ao:before", "rows:done:before",
                 "rows:done:after", "statuses:before")


def test_every_import_write_step_is_a_fault_point(official):
    _, _, reached = official
    assert set(reached) == set(IMPORT_POINTS)
    # the done samples' statuses, then the failed sample's
    assert reached.count("statuses:before") == 2


def _check_import_crash(store: Path, ref: dict) -> set[int]:
    """The crashed import's invariants: a sample is done only with its final arrays."""
    try:
        fs = FeatureStore.open(store)
    except StoreError:
        return set()
    if "official-causalnet" not in fs.variants():
        return set()
    var = fs.variant("official-causalnet")
    if "fingerprint" not in var.group.attrs:  # an interrupted creation: nothing done
        return set()
    done = var.done()
    for i in np.flatnonzero(done):
        row = var.read_sample(int(i), ("image", "image_ao", "dir_oa", "dir_ao"))
        for name, value in row.items():
            assert np.array_equal(value, ref[f"official-causalnet/{name}"][i]), (i, name)
    return set(np.flatnonzero(done).tolist())


@pytest.mark.parametrize("point", IMPORT_POINTS)
@pytest.mark.parametrize("kill", [False, True], ids=["raise", "sigkill"])
def test_import_stopped_at_each_point_then_resumed(official, tmp_path, point, kill):
    from mefeat.run.import_features import import_features

    folder, ref, _ = official
    store = tmp_path / "s.zarr"
    if kill:
        cmd = [sys.executable, "-m", "mefeat.cli.main", "import-features", str(folder),
               "--format", "causalnet", "--store", str(store)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             env={**os.environ, ENV: f"{point}@1:kill"})
        assert res.returncode == -9, res.stdout + res.stderr
    else:
        with armed(point), pytest.raises(InjectedFault):
            import_features(folder, fmt="causalnet", store=store)
    done = _check_import_crash(store, ref)
    # the rows are written together: all three done once their flags are, none before
    assert len(done) == (3 if point in ("rows:done:after", "statuses:before") else 0)
    summary = import_features(folder, fmt="causalnet", store=store)
    assert (len(summary.done), len(summary.resumed), len(summary.failed)) == (
        3 - len(done), len(done), 1)
    x = store_arrays(store)
    assert x.keys() == ref.keys()
    for k in ref:
        assert np.array_equal(x[k], ref[k]), k
