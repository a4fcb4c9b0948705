"""`extract` end to end on a small demo dataset made from the real face photograph."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _stores import store_arrays
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.demo import build_demo
from mefeat.run.extract import add_variants, extract
from mefeat.store import FeatureStore

SIZE = 112  # small faces keep TV-L1 fast in tests; the flow test covers 224 px


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"), subjects=2, clips=3)


@pytest.fixture(scope="session")
def demo_store(demo_data, tmp_path_factory):
    store = tmp_path_factory.mktemp("stores") / "demo.zarr"
    summary = extract(demo_data.root, dataset="casme2", annotations=demo_data.annotations,
                      store=store, label_scheme="casme2-5", size=SIZE, progress=False)
    assert len(summary.done) == 6 and not summary.failed
    return store


@pytest.fixture
def demo_copy(demo_data, tmp_path):
    root = tmp_path / "CASME2"
    shutil.copytree(demo_data.root, root)
    return root, root / demo_data.annotations.name


def _run(root, ann, store, **kw):
    return extract(root, dataset="casme2", annotations=ann, store=store, size=SIZE,
                   progress=False, **kw)


def test_store_holds_every_map(demo_store):
    fs = FeatureStore.open(demo_store)
    var = fs.variant("gt")
    assert var.done().all()
    for name, shape in {"flow_oa": (2,), "flow_ao": (2,), "strain_oa": (1,),
                        "dir_ao": (3,), "mag_oa": (1,)}.items():
        assert var.group[name].shape == (6, *shape, SIZE, SIZE)
    frames, landmarks = fs.read_frames(str(fs.column("key")[0]))
    assert frames.dtype == np.uint8 and frames.shape[1:] == (SIZE, SIZE)
    assert landmarks.shape == (68, 2)
    assert fs.attrs["provenance"]["mefeat"] and "zarr" in fs.attrs["provenance"]
    # the motion is at the apex: onset→apex flow is clearly non-zero inside the face
    mag = var.group["mag_oa"][:]
    assert mag.max() > 0.5


def test_rerun_resumes_without_recomputing(demo_store, demo_data):
    summary = extract(demo_data.root, dataset="casme2", annotations=demo_data.annotations,
                      store=demo_store, label_scheme="casme2-5", size=SIZE, progress=False)
    assert summary.done == [] and len(summary.resumed) == 6


def test_other_settings_are_refused(demo_store, demo_data):
    from mefeat.errors import StoreError

    with pytest.raises(StoreError, match=r"align\.size: store has 112, this run asks for 96"):
        extract(demo_data.root, dataset="casme2", annotations=demo_data.annotations,
                store=demo_store, label_scheme="casme2-5", size=96, progress=False)


def test_bad_clips_fail_alone_and_are_named(demo_copy, tmp_path):
    root, ann = demo_copy
    clips = sorted(p for p in root.glob("sub*/EP*") if p.is_dir())
    corrupt = sorted(clips[0].glob("*.jpg"))[3]
    corrupt.write_bytes(b"not a jpeg at all")
    empty = sorted(clips[1].glob("*.jpg"))[0]
    empty.write_bytes(b"")
    summary = _run(root, ann, tmp_path / "s.zarr")
    assert len(summary.done) == 4
    msgs = " ".join(summary.failed.values())
    assert corrupt.name in msgs and "not a readable image" in msgs
    assert empty.name in msgs and "empty file" in msgs
    fs = FeatureStore.open(tmp_path / "s.zarr")
    assert sorted(fs.column("status")) == ["done"] * 4 + ["failed"] * 2
    # fixing the files and running again finishes the two, keeps the four
    shutil.copy(sorted(clips[0].glob("*.jpg"))[4], corrupt)
    shutil.copy(sorted(clips[1].glob("*.jpg"))[1], empty)
    again = _run(root, ann, tmp_path / "s.zarr")
    assert len(again.done) == 2 and len(again.resumed) == 4 and not again.failed


def test_no_face_is_a_per_sample_error(demo_copy, tmp_path):
    import cv2

    root, ann = demo_copy
    clip = sorted(p for p in root.glob("sub*/EP*") if p.is_dir())[2]
    for f in clip.glob("*.jpg"):
        cv2.imwrite(str(f), np.full((320, 320), 90, np.uint8))
    summary = _run(root, ann, tmp_path / "s.zarr")
    assert len(summary.done) == 5
    (key, why), = summary.failed.items()
    assert key.endswith(clip.name) and "no face found" in why


def test_new_keyframe_policy_reuses_aligned_frames(demo_data, demo_store, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    summary = add_variants(store, keyframes=("noise:10:0",), progress=False)
    assert summary.variants == ["noise-std10-s0"]
    assert len(summary.done) == 6, summary.failed
    fs = FeatureStore.open(store)
    kf = fs.variant("noise-std10-s0").group["keyframes"][:]
    gt = fs.variant("gt").group["keyframes"][:]
    assert (kf[:, 0] == gt[:, 0]).all() and (kf[:, 1] != gt[:, 1]).any()  # apex moved


def test_two_workers_give_the_same_store(demo_data, demo_store, tmp_path):
    store = tmp_path / "w2.zarr"
    extract(demo_data.root, dataset="casme2", annotations=demo_data.annotations, store=store,
            label_scheme="casme2-5", size=SIZE, workers=2, progress=False)
    a, b = store_arrays(demo_store), store_arrays(store)
    assert a.keys() >= b.keys()
    for k in b:
        assert np.array_equal(a[k], b[k]), k


def test_cli_extract_inspect_show_export(demo_data, demo_store, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(demo_store), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["samples"] == 6 and info["by_dataset"] == {"casme2": 6}
    assert set(info) >= {"samples", "by_dataset", "by_label", "variants", "failed"}
    assert info["variants"]["gt"]["done"] == 6
    key = next(iter(demo_data.apex))
    res = runner.invoke(cli, ["show", str(demo_store), key, "--out", str(tmp_path / "f.png")])
    assert res.exit_code == 0 and (tmp_path / "f.png").stat().st_size > 10_000
    res = runner.invoke(cli, ["export", str(demo_store), "--out", str(tmp_path / "f.h5")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["show", str(demo_store), "casme2/sub99/x", "--out", "x.png"])
    assert res.exit_code == 1 and "no sample 'casme2/sub99/x'" in res.output


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(tmp_path)])
    assert res.exit_code == 1
    assert res.output.startswith("mefeat: error: ") and "Traceback" not in res.output
    bad = tmp_path / "ann.xlsx"
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["Subject", "Filename", "OnsetFrame", "OffsetFrame", "Estimated Emotion"])
    wb.save(bad)
    res = runner.invoke(cli, ["extract", str(tmp_path), "--dataset", "casme2",
                              "--annotations", str(bad), "--store", str(tmp_path / "s.zarr")])
    assert res.exit_code == 1 and "ApexFrame" in res.output and str(bad) in res.output


def test_a_resaved_spreadsheet_with_the_same_content_resumes(demo_data, demo_store, tmp_path):
    from openpyxl import load_workbook

    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    resaved = tmp_path / "resaved.xlsx"
    wb = load_workbook(demo_data.annotations)
    wb.properties.creator = "someone else"  # other bytes, the same annotations
    wb.save(resaved)
    assert resaved.read_bytes() != demo_data.annotations.read_bytes()
    summary = extract(demo_data.root, dataset="casme2", annotations=resaved, store=store,
                      label_scheme="casme2-5", size=SIZE, progress=False)
    assert len(summary.resumed) == 6 and not summary.done and not summary.failed


def test_demo_twice_in_one_folder_resumes(tmp_path):
    # Without the long videos: their extraction and both spotters, run twice, were 146 of
    # this test's 155 s on 2 cores (tests/test_spot_long.py and test_long_store.py cover
    # them); the test is about the short-clip store resuming.
    args = ["demo", "--out", str(tmp_path / "d"), "--subjects", "2", "--clips", "2",
            "--no-train", "--workers", "1", "--long-videos", "0"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "resuming the existing store" in second.output
    assert "done 0, already done 4" in second.output


def test_extract_on_ray_equals_the_local_executor(demo_data, demo_store, tmp_path):
    """`mefeat extract ... --executor ray --workers 2`: a local Ray that mefeat starts and
    stops itself computes the clips; this process writes the same store, array for array."""
    pytest.importorskip("ray")
    store = tmp_path / "ray.zarr"
    res = CliRunner().invoke(cli, ["extract", str(demo_data.root), "--dataset", "casme2",
                                   "--annotations", str(demo_data.annotations),
                                   "--labels", "casme2-5", "--store", str(store), "--size",
                                   str(SIZE), "--executor", "ray", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "done 6, already done 0, failed 0" in res.output
    a, b = store_arrays(demo_store), store_arrays(store)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    import ray

    assert not ray.is_initialized()  # stopped again
