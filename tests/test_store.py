"""The feature store: layout, resume, refusal of other settings, visibility of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mefeat.datasets._sample import Sample
from mefeat.errors import StoreError
from mefeat.store import SCHEMA_VERSION, FeatureStore


def _samples(n=3):
    return [
        Sample(dataset="demo", subject=f"s{i}", clip=f"c{i}", frames=(Path("a"), Path("b")),
               onset_frame=1, apex_frame=5, offset_frame=9, onset=0, apex=4, offset=8,
               emotion="happiness", label=i % 2)
        for i in range(n)
    ]


CONFIG = {"dataset": "demo", "align": {"size": 16}}


def test_create_write_and_read_back(tmp_path):
    path = tmp_path / "s.zarr"
    with FeatureStore.create_or_resume(path, _samples(), CONFIG) as fs:
        frames = np.arange(3 * 16 * 16, dtype=np.uint8).reshape(3, 16, 16)
        fs.write_frames("demo/s1/c1", frames, np.ones((68, 2), np.float32))
        var = fs.require_variant("gt", {"flow": "tvl1"}, 16, maps=["flow_oa", "dir_oa"])
        var.write_sample(1, (0, 1, 2), {"flow_oa": np.ones((2, 16, 16), np.float32),
                                        "dir_oa": np.zeros((3, 16, 16), np.uint8)})
        fs.set_status(1, "done")
    fs = FeatureStore.open(path)
    assert fs.attrs["schema_version"] == SCHEMA_VERSION
    assert list(fs.column("key")) == ["demo/s0/c0", "demo/s1/c1", "demo/s2/c2"]
    assert list(fs.column("status")) == ["pending", "done", "pending"]
    got, lm = fs.read_frames("demo/s1/c1")
    assert np.array_equal(got, frames) and lm.shape == (68, 2)
    idx, arrays = fs.variant("gt").read(["flow_oa", "keyframes"])
    assert idx.tolist() == [1]  # only the finished sample is visible
    assert arrays["flow_oa"].shape == (1, 2, 16, 16)
    assert arrays["keyframes"][0].tolist() == [0, 1, 2]
    with pytest.raises(StoreError, match="no aligned frames for demo/s0/c0"):
        fs.read_frames("demo/s0/c0")


def test_other_settings_are_refused_naming_the_setting(tmp_path):
    path = tmp_path / "s.zarr"
    FeatureStore.create_or_resume(path, _samples(), CONFIG).close()
    other = {"dataset": "demo", "align": {"size": 32}}
    with pytest.raises(StoreError, match=r"align\.size: store has 16, this run asks for 32"):
        FeatureStore.create_or_resume(path, _samples(), other)
    with pytest.raises(StoreError, match="another list of samples"):
        FeatureStore.create_or_resume(path, _samples(2), CONFIG)


def test_variant_with_other_settings_is_refused(tmp_path):
    with FeatureStore.create_or_resume(tmp_path / "s.zarr", _samples(), CONFIG) as fs:
        fs.require_variant("gt", {"flow": {"method": "tvl1"}}, 16)
        with pytest.raises(StoreError, match=r"flow\.method: store has 'tvl1'.*'dis'"):
            fs.require_variant("gt", {"flow": {"method": "dis"}}, 16)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    FeatureStore.create_or_resume(path, _samples(), CONFIG).close()
    fs = FeatureStore.open(path, mode="r+")
    fs.group.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="newer mefeat"):
        FeatureStore.open(path)


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    with FeatureStore.create_or_resume(path, _samples(), CONFIG):
        with pytest.raises(StoreError, match="another mefeat process .* is writing"):
            FeatureStore.create_or_resume(path, _samples(), CONFIG)
    FeatureStore.create_or_resume(path, _samples(), CONFIG).close()  # free again


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no mefeat store here"):
        FeatureStore.open(tmp_path / "nothing.zarr")


def test_duplicate_keys_are_refused(tmp_path):
    s = _samples(1)
    with pytest.raises(StoreError, match="duplicate sample keys"):
        FeatureStore.create_or_resume(tmp_path / "s.zarr", s + s, CONFIG)


def test_hdf5_export_has_the_same_arrays(tmp_path):
    import h5py

    from mefeat.store.export import to_hdf5

    path = tmp_path / "s.zarr"
    with FeatureStore.create_or_resume(path, _samples(), CONFIG) as fs:
        var = fs.require_variant("gt", {}, 8, maps=["strain_oa"])
        var.write_sample(0, (0, 1, 2), {"strain_oa": np.full((1, 8, 8), 0.5, np.float32)})
    to_hdf5(path, tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as h5:
        assert h5["features/gt/strain_oa"].shape == (3, 1, 8, 8)
        assert np.allclose(h5["features/gt/strain_oa"][0], 0.5)
        assert [k.decode() for k in h5["samples/key"][:]][0] == "demo/s0/c0"
        assert h5.attrs["schema_version"] == SCHEMA_VERSION


def test_a_forked_worker_does_not_keep_the_writer_lock(tmp_path):
    # flock belongs to the open file, which a forked child shares: if a pool worker kept
    # its copy, a writer that died (its descriptor closed without unlocking) would leave
    # the store locked for as long as the worker lives, and the resume would be refused.
    import os
    import time

    from mefeat.store.lock import WriterLock

    lock = WriterLock(tmp_path)
    lock.acquire()
    ready, tell = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker (its at-fork handlers have run): alive while the parent retries
        os.write(tell, b"x")
        time.sleep(5)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        os.close(lock._fd)  # the writer's death: no unlock, its descriptor gone
        again = WriterLock(tmp_path)
        again.acquire()  # refused if the child still holds the lock
        again.release()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready)
        os.close(tell)


def test_a_variant_whose_creation_was_cut_short_is_invisible_and_made_again(tmp_path):
    # require_imported writes the fingerprint last: killed before it, the group is there
    # but no reader sees a variant, and the next writer makes it again
    from mefeat.faults import InjectedFault, armed

    FS = FeatureStore
    store = tmp_path / "s.zarr"
    with FS.create_or_resume(store, _samples(2), {"dataset": "t"}) as fs:
        with armed("imported:create"), pytest.raises(InjectedFault):
            fs.require_imported("v", {"image": ((3, 4, 4), "uint8")}, {"format": "t"})
    fs = FS.open(store)
    assert "v" in [n for n, _ in fs.group["features"].groups()]
    assert fs.variants() == []
    with pytest.raises(StoreError, match="no feature variant 'v'"):
        fs.variant("v")
    with FS.create_or_resume(store, _samples(2), {"dataset": "t"}) as fs:
        var = fs.require_imported("v", {"image": ((3, 4, 4), "uint8")}, {"format": "t"})
        assert not var.done().any()
    assert FS.open(store).variants() == ["v"]
