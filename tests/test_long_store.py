"""The long-video store (issue 27 item 2): alignment on a schedule with bounded drift, the
SoftNet ROI image, chunked writes that resume after a SIGKILL at any chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mefeat.datasets.longvideo import LongVideo, LongVideoSet
from mefeat.errors import StoreError
from mefeat.face.schedule import (
    anchor_frames,
    hold_transforms,
    interpolate_transforms,
    point_shift,
    repair_anchors,
    step_transforms,
)
from mefeat.flow.roi import roi_image, roi_layout
from mefeat.run.extract_long import extract_long
from mefeat.store import FeatureStore
from mefeat.store.long_videos import LongVideoStore

ROOT = Path(__file__).resolve().parents[1]


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy]])


def test_anchor_frames_and_interpolation_by_hand():
    assert anchor_frames(10, 4).tolist() == [0, 4, 8, 9]
    assert anchor_frames(9, 4).tolist() == [0, 4, 8]
    assert anchor_frames(1, 30).tolist() == [0]
    m = interpolate_transforms([0, 4], [shift(0, 0), shift(8, -4)], [0, 1, 4, 6])
    assert m[:, 0, 2].tolist() == [0, 2, 8, 8]  # a quarter of the way; constant beyond
    assert m[:, 1, 2].tolist() == [0, -1, -4, -4]


def test_a_transform_is_held_until_the_face_moves_beyond_the_tolerance():
    # the face jitters by 0.5 px, then drifts: 1, 2.5, 3, 6 px from the start
    shifts = [0, 0.5, -0.5, 1.0, 2.5, 3.0, 6.0]
    held, switches = hold_transforms([shift(x, 0) for x in shifts], size=64, tolerance=2.0)
    assert held[:, 0, 2].tolist() == [0, 0, 0, 0, 2.5, 2.5, 6.0]
    assert switches == [0, 4, 6]
    steps = step_transforms([0, 10, 20], held[[0, 4, 6]], [0, 9, 10, 15, 25])
    assert steps[:, 0, 2].tolist() == [0, 0, 2.5, 2.5, 6.0]


def test_repair_fills_missing_faces_and_replaces_a_jump():
    assert point_shift(shift(0, 0), shift(3, 4), 100) == pytest.approx(5.0)
    # anchor 2 has no face; anchor 3 jumped 20 px where its neighbours are 0.5 px apart
    matrices = [shift(0, 0), shift(1, 0), None, shift(20, 0), shift(4, 0)]
    s = repair_anchors([0, 10, 20, 30, 40], matrices, ["", "", "no face", "", ""], size=64,
                       max_jump=3.0)
    assert s.matrices[:, 0, 2].tolist() == pytest.approx([0, 1, 2, 3, 4])
    assert [r["frame"] for r in s.repaired] == [20, 30]
    assert s.repaired[0]["reason"] == "no face" and "jumped" in s.repaired[1]["reason"]
    with pytest.raises(ValueError):
        repair_anchors([0, 5], [None, None], ["x", "y"], size=64, max_jump=3.0)


def test_roi_image_removes_head_motion_masks_eyes_and_places_the_mouth_below(aligned_face):
    _, points = aligned_face  # a real face's landmarks, aligned at 224 px
    layout = roi_layout(points, 224)
    flow = np.zeros((224, 224, 2), np.float32)
    flow[..., 0] = 2.0  # the whole head moves 2 px right: the nose patch takes it away
    assert np.abs(roi_image(flow, layout)).max() == pytest.approx(0.0, abs=1e-6)
    x0, y0, x1, y1 = layout["mouth"]
    flow[y0:y1, x0:x1, 1] += 1.5  # the mouth moves down besides
    img = roi_image(flow, layout)
    assert img[21:, :, 1].mean() > 1.0 and np.abs(img[:21, :, 1]).max() < 1.0
    flow = np.zeros_like(flow)
    eye = np.asarray(layout["eyes"][0])
    cx, cy = eye.mean(axis=0).astype(int)
    flow[cy - 2:cy + 3, cx - 2:cx + 3] = 5.0  # a blink inside the eye polygon: masked
    assert np.abs(roi_image(flow, layout)).max() == 0


def _video(folder: Path, frames: np.ndarray, subject: str = "s01") -> LongVideo:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"img{i + 1}.png"
        cv2.imwrite(str(p), f)
        paths.append(p)
    return LongVideo("casme-sq", subject, f"{subject}_0101", tuple(paths),
                     tuple(range(1, len(frames) + 1)), 30.0)


@pytest.fixture(scope="module")
def drifting(tmp_path_factory, aligner):
    """300 frames of a still face whose head drifts 6 px to and fro (period 300 frames)."""
    from mefeat.demo import demo_face
    from mefeat.synth import face_photo, make_long_video

    camera, landmarks = demo_face(face_photo(), 0, np.random.default_rng(0), aligner)
    frames = make_long_video(camera, landmarks, [], n_frames=300, drift=6.0, noise=0.5)
    root = tmp_path_factory.mktemp("drift")
    return root, _video(root / "v", frames)


def test_drift_stays_bounded_with_the_schedule_and_not_without(drifting):
    """Aligned frames against the first. The bound of the schedule: the tolerance (2 px),
    plus the head's travel between two detections (the synthetic drift 6 sin(2 pi t / 300)
    camera px moves at most 12 sin(pi every / 300) in ``every`` frames, times the aligner's
    scale), plus a detection's jitter (1 px). With anchors on the first and last frame
    only (both at the same head position) the face follows the head's whole 6-px drift."""
    root, video = drifting
    residual, bound = {}, {}
    for every in (10, 300):
        store = root / f"every{every}.zarr"
        extract_long(LongVideoSet([video], [], []), store, ks=[6], flow="farneback",
                     every=every, tolerance=2.0, chunk=100)
        lv = LongVideoStore.open(store).video(video.key)
        a = lv.frames().astype(np.float32)
        residual[every] = max(np.hypot(*cv2.phaseCorrelate(a[0], a[t])[0])
                              for t in range(0, 300, 5))
        scale = float(np.hypot(*lv.anchors()[1][0][:, 0]))  # aligned px per camera px
        bound[every] = 2.0 + 12 * np.sin(np.pi * every / 300) * scale + 1.0
    assert residual[10] < bound[10] < 5.0
    assert residual[300] > 5 * scale  # of the 6 px (7 aligned px) the head drifts


def test_a_still_face_stays_still_between_detections(tmp_path, aligner):
    """No drift: the alignment never changes (one switch, at frame 0), so the motion score
    of the stored frames against the first is the noise floor (0.02 px) that a clip aligned
    with one transform has, not the detections' jitter (0.1-0.3 px when every frame took its
    own or an interpolated transform)."""
    from mefeat.demo import demo_face
    from mefeat.keyframes.intervals import motion_curve
    from mefeat.synth import face_photo, make_long_video

    camera, landmarks = demo_face(face_photo(), 1, np.random.default_rng(1), aligner)
    video = _video(tmp_path / "v", make_long_video(camera, landmarks, [], n_frames=150,
                                                   noise=0.5))
    extract_long(LongVideoSet([video], [], []), tmp_path / "s.zarr", ks=[6],
                 flow="farneback", every=30)
    lv = LongVideoStore.open(tmp_path / "s.zarr").video(video.key)
    assert lv.group.attrs["switches"] == [0]
    assert motion_curve(lv.frames()).max() < 0.05


def _small(tmp: Path) -> LongVideo:
    rng = np.random.default_rng(0)
    from mefeat.synth import face_photo

    face = cv2.resize(face_photo(), (160, 160))
    frames = [np.roll(face, int(round(2 * np.sin(t / 9))), axis=1) for t in range(100)]
    frames = [np.clip(f + rng.normal(0, 1, f.shape), 0, 255).astype(np.uint8) for f in frames]
    return _video(tmp / "frames", np.stack(frames))


EXTRACT = """
import sys
from mefeat.datasets.longvideo import LongVideo, LongVideoSet
from mefeat.run.extract_long import extract_long
from pathlib import Path
paths = tuple(sorted(Path(sys.argv[1]).glob('*.png'), key=lambda p: int(p.stem[3:])))
v = LongVideo('casme-sq', 's01', 's01_0101', paths, tuple(range(1, len(paths) + 1)), 30.0)
extract_long(LongVideoSet([v], [], []), sys.argv[2], ks=[4, 9], flow='farneback', chunk=32,
             every=25)
"""


@pytest.mark.parametrize("point", ["long:create", "long:anchors", "long:chunk:frames@2",
                                   "long:chunk:rois@3"])
def test_sigkill_at_any_point_resumes_to_the_same_store(tmp_path, point):
    video = _small(tmp_path)
    reference = tmp_path / "reference.zarr"
    extract_long(LongVideoSet([video], [], []), reference, ks=[4, 9], flow="farneback",
                 chunk=32, every=25)
    store = tmp_path / "killed.zarr"
    env = {**os.environ, "MEFEAT_FAULT": f"{point}:kill"}
    res = subprocess.run([sys.executable, "-c", EXTRACT, str(video.frames[0].parent), str(store)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    if point.startswith("long:chunk"):
        done = LongVideoStore.open(store).video(video.key).chunks_done()
        assert done.sum() == int(point.rsplit("@")[1]) - 1 and not done.all()
        with pytest.raises(StoreError, match="not all extracted"):
            LongVideoStore.open(store).video(video.key).frames()
    summary = extract_long(LongVideoSet([video], [], []), store, ks=[4, 9], flow="farneback",
                           chunk=32, every=25)
    assert summary.done == [video.key]
    a, b = (LongVideoStore.open(s).video(video.key) for s in (reference, store))
    assert a.complete() and b.complete()
    np.testing.assert_array_equal(a.frames(), b.frames())
    for k in (4, 9):
        np.testing.assert_array_equal(a.roi(k), b.roi(k))
    assert not np.any(a.roi(9)[-9:]) and np.any(a.roi(9)[:-9])  # no t+k past the end
    # Run again: nothing left to do.
    assert extract_long(LongVideoSet([video], [], []), store, ks=[4, 9], flow="farneback",
                        chunk=32, every=25).resumed == [video.key]


def test_other_settings_are_refused_and_short_clips_can_join(tmp_path):
    video = _small(tmp_path)
    store = tmp_path / "s.zarr"
    extract_long(LongVideoSet([video], [], []), store, ks=[4], flow="farneback", chunk=50)
    with pytest.raises(StoreError, match=r"ks: store has \[4\], this run asks for \[5\]"):
        extract_long(LongVideoSet([video], [], []), store, ks=[5], flow="farneback", chunk=50)
    with pytest.raises(StoreError, match="holds long videos only"):
        FeatureStore.open(store).table()
    with pytest.raises(StoreError, match="no flow for k=7"):
        LongVideoStore.open(store).video(video.key).roi(7)


def test_workers_and_chunk_sizes_give_the_same_arrays(tmp_path):
    """Chunks computed by a pool of 2 processes, or cut at other frames (a flow t -> t+9
    that crosses a chunk's end reads the next chunk's frames), store the same arrays."""
    video = _small(tmp_path)
    got = {}
    for name, chunk, workers in (("one", 32, 1), ("pool", 32, 2), ("other-chunks", 45, 2)):
        store = tmp_path / f"{name}.zarr"
        extract_long(LongVideoSet([video], [], []), store, ks=[4, 9], flow="farneback",
                     chunk=chunk, every=25, workers=workers)
        lv = LongVideoStore.open(store).video(video.key)
        got[name] = (lv.frames(), lv.roi(4), lv.roi(9))
    for name in ("pool", "other-chunks"):
        for a, b in zip(got["one"], got[name], strict=True):
            np.testing.assert_array_equal(a, b)
