"""``mefeat predict``: a trained run classifies raw clips, videos and long videos.

One tiny STSTNet run is trained on a demo store (2 subjects, 3 clips each, 112 px); the
tests then predict on a demo clip's frame folder and on the same frames as an .mp4 (same
label and key frames), check that the inputs equal what ``load_view`` makes from the store
for the same key frames, find the three expressions of a video made of three demo clips
with still frames between them (apex within ±3 frames of the truth), and give each bad
input its one-line error.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.frames import list_frames, read_clip
from mefeat.keyframes.intervals import (
    Interval,
    curve_intervals,
    merge_intervals,
    window_starts,
)
from mefeat.train import RunFolder


def _invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    store = demo_store(root, subjects=2, clips=3, size=112)
    run = root / "run"
    res = _invoke("train", "--model", "ststnet", "--store", store, "--epochs", 5,
                  "--workers", 1, "--out", run)
    assert res.exit_code == 0, res.output
    truth = json.loads((root / "data" / "truth.json").read_text())["apex"]
    return SimpleNamespace(root=root, store=store, run=run, data=root / "data" / "CASME2",
                           truth=truth)


def _clip_dir(trained, key: str) -> Path:
    _, subject, clip = key.split("/")
    return trained.data / subject / clip


def _raw(folder: Path) -> np.ndarray:
    return read_clip([p for _, p in list_frames(folder, key=str(folder))], key=str(folder))


def _write_video(path: Path, frames: np.ndarray) -> bool:
    """Write grayscale frames as a video; True when the codec is lossless (FFV1)."""
    h, w = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), 25,
                             (w, h), [cv2.VIDEOWRITER_PROP_IS_COLOR, 0])
    lossless = writer.isOpened()
    if not lossless:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h),
                                 isColor=False)
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return lossless


def _write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):  # unpadded numbers: the order must come from the numbers
        cv2.imwrite(str(folder / f"img{i + 1}.png"), f)
    return folder


# -- one clip ------------------------------------------------------------------------------


def test_predict_folder_and_video_agree(trained, tmp_path):
    key = "casme2/sub01/EP01_01"
    folder = _clip_dir(trained, key)
    a = _json(_invoke("predict", folder, "--run", trained.run, "--json",
                      "--out", tmp_path / "clip.png"))
    n = len(_raw(folder))
    assert a["mode"] == "clip" and a["n_frames"] == n
    assert (a["onset"], a["offset"]) == (0, n - 1) and 0 < a["apex"] < n - 1
    assert abs(a["apex"] - trained.truth[key]) <= 2
    assert a["label"] in a["classes"] and a["classes"] == sorted(a["classes"])
    probs = np.array(list(a["probabilities"].values()))
    assert probs.sum() == pytest.approx(1.0) and a["label"] == a["classes"][probs.argmax()]
    assert a["folds"] == ["casme2/sub01", "casme2/sub02"] and a["spot_method"] == "flowpeak"
    assert (tmp_path / "clip.png").stat().st_size > 10_000

    video = tmp_path / "clip.mp4"
    lossless = _write_video(video, _raw(folder))
    b = _json(_invoke("predict", video, "--run", trained.run, "--json"))
    assert b["kind"] == "video" and b["fps"] == pytest.approx(25)
    assert b["label"] == a["label"]
    if lossless:
        assert (b["onset"], b["apex"], b["offset"]) == (a["onset"], a["apex"], a["offset"])
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-6)

    text = _invoke("predict", video, "--run", trained.run)
    assert text.exit_code == 0, text.output
    assert f"label: {a['label']}" in text.stdout
    assert f"onset 0, apex {b['apex']}, offset {n - 1}" in text.stdout
    assert "apex spotted by flowpeak" in text.stdout


def test_predict_fold_mean_of_softmax(trained):
    folder = _clip_dir(trained, "casme2/sub02/EP02_02")
    both = _json(_invoke("predict", folder, "--run", trained.run, "--json"))
    one = [_json(_invoke("predict", folder, "--run", trained.run, "--json", "--fold", f))
           for f in ("sub01", "casme2/sub02")]
    assert [o["folds"] for o in one] == [["casme2/sub01"], ["casme2/sub02"]]
    for c in both["classes"]:
        mean = (one[0]["probabilities"][c] + one[1]["probabilities"][c]) / 2
        assert both["probabilities"][c] == pytest.approx(mean, abs=1e-6)


@pytest.mark.parametrize("view", ["ststnet", "causalnet", "mmnet"])
def test_view_inputs_match_the_store_view(trained, view):
    """On a stored clip and its stored key frames, predict's inputs are load_view's."""
    from mefeat.run.predict import Run, view_inputs
    from mefeat.store import FeatureStore
    from mefeat.train import load_view

    record = RunFolder(trained.run).record()
    run = Run(path=trained.run, record=replace(record, model=view), folds=[])
    data = load_view(trained.store, view, variant="gt")
    fs = FeatureStore.open(trained.store)
    i = 1
    key = str(data.keys[i])
    frames, landmarks = fs.read_frames(key)
    kf = fs.variant("gt").read(["keyframes"])[1]["keyframes"][i]
    inputs, _ = view_inputs(run, frames, landmarks, *(int(k) for k in kf))
    assert len(inputs) == len(data.inputs)
    for mine, theirs in zip(inputs, data.inputs, strict=True):
        assert mine.shape == (1,) + theirs.shape[1:] and mine.dtype == np.float32
        np.testing.assert_allclose(mine[0], theirs[i], rtol=0, atol=1e-5)


def test_spot_method_follows_the_variant(trained):
    from mefeat.run.predict import Run

    record = RunFolder(trained.run).record()
    made = record.store_settings
    spot = replace(record, data={**record.data, "variant": "spot-featdiff"}, store_settings={
        **made, "variant_settings": {**made["variant_settings"],
                                     "keyframes": {"policy": "spot", "method": "featdiff"}}})
    assert Run(trained.run, spot, []).spot_method == "featdiff"
    assert "as in the run's variant 'spot-featdiff'" in Run(trained.run, spot, []).spot_note
    assert Run(trained.run, record, []).spot_method == "flowpeak"


# -- a long video --------------------------------------------------------------------------


def test_predict_long_video_finds_three_expressions(trained, tmp_path):
    keys = [k for k in trained.truth if "/sub01/" in k]
    gap = 20
    parts, apexes, pos = [], [], 0
    for key in keys:
        clip = _raw(_clip_dir(trained, key))
        parts += [np.repeat(clip[:1], gap, axis=0), clip]
        apexes.append(pos + gap + trained.truth[key])
        pos += gap + len(clip)
    parts.append(np.repeat(parts[-1][-1:], gap, axis=0))
    video = _write_frames(tmp_path / "long", np.concatenate(parts))
    res = _json(_invoke("predict", video, "--run", trained.run, "--json",
                        "--out", tmp_path / "long.png"))
    assert res["mode"] == "video" and (res["window"], res["stride"]) == (64, 32)
    found = res["intervals"]
    assert len(found) == 3, found
    for iv, apex in zip(found, apexes, strict=True):
        assert iv["onset"] < iv["apex"] < iv["offset"]
        assert abs(iv["apex"] - apex) <= 3, (found, apexes)
        assert iv["label"] in res["classes"] and iv["score"] > res["threshold"]
    assert res["skipped"] == []
    assert (tmp_path / "long.png").stat().st_size > 10_000


def test_window_starts_cover_the_video():
    assert window_starts(40, 64, 32) == [0]
    assert window_starts(163, 64, 32) == [0, 32, 64, 96, 99]
    assert window_starts(128, 64, 32) == [0, 32, 64]


def test_curve_intervals_and_merge():
    rest = np.full(40, 0.01)
    bump = np.concatenate([rest[:5], [0.03, 0.2, 0.5, 0.3, 0.04, 0.02], rest[:10],
                           [0.03, 0.12, 0.2, 0.06, 0.02], rest[:14]])
    found = curve_intervals(bump, threshold=0.1)
    assert [(iv.onset, iv.peak, iv.offset) for iv in found] == [(4, 7, 11), (20, 23, 26)]
    # A peak that does not come back to rest before the window ends is left to a later
    # window, unless the window ends the video.
    rising = np.concatenate([rest[:5], [0.05, 0.2, 0.4, 0.5]])
    assert curve_intervals(rising, threshold=0.1) == []
    assert [(iv.onset, iv.offset) for iv in curve_intervals(rising, threshold=0.1,
                                                            open_end=True)] == [(4, 8)]
    merged = merge_intervals([Interval(40, 50, 60, 0.3), Interval(4, 7, 11, 0.5),
                              Interval(8, 9, 14, 0.6), Interval(14, 16, 18, 0.2)])
    assert merged == [Interval(4, 9, 14, 0.6), Interval(14, 16, 18, 0.2),
                      Interval(40, 50, 60, 0.3)]


# -- bad input -----------------------------------------------------------------------------


def _edited_run(trained, tmp_path, **changes) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained.run / "checkpoints", run / "checkpoints")
    meta = run / "run.json"
    meta.write_text(json.dumps({**json.loads((trained.run / "run.json").read_text()),
                                **changes}))
    return run


def _error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("mefeat: error: ") and "Traceback" not in result.output
    for text in fragments:
        assert text in result.output, result.output


def test_predict_bad_clips(trained, tmp_path):
    folder = _clip_dir(trained, "casme2/sub01/EP01_01")
    rng = np.random.default_rng(0)
    noise = _write_frames(tmp_path / "noface",
                          rng.integers(0, 255, (4, 160, 160), dtype=np.uint8))
    _error(_invoke("predict", noise, "--run", trained.run), "no face found")
    two = _write_frames(tmp_path / "two", _raw(folder)[:2])
    _error(_invoke("predict", two, "--run", trained.run), "2 frames", "at least 3")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    _error(_invoke("predict", bad, "--run", trained.run), "broken.mp4",
           "cannot be opened as a video")
    empty = tmp_path / "empty"
    empty.mkdir()
    _error(_invoke("predict", empty, "--run", trained.run), "no image files")


def test_predict_bad_runs(trained, tmp_path):
    clip = _clip_dir(trained, "casme2/sub01/EP01_01")
    _error(_invoke("predict", clip, "--run", tmp_path), "no run.json",
           "the --out folder of `mefeat train`")
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "run.json").write_text("{}")  # an earlier mefeat's layout
    _error(_invoke("predict", clip, "--run", old), "an older mefeat", "train again")
    official = _edited_run(trained, tmp_path / "o", official_format="official-htnet")
    _error(_invoke("predict", clip, "--run", official), "official features",
           "cannot compute from raw frames")
    three = _edited_run(trained, tmp_path / "c", classes=["negative", "positive", "surprise"],
                        num_classes=3)
    _error(_invoke("predict", clip, "--run", three), "this checkpoint has 5 classes",
           "the run has 3", "different label schemes")
    _error(_invoke("predict", clip, "--run", trained.run, "--labels", "megc2019"),
           "not on label scheme megc2019")
    _error(_invoke("predict", clip, "--run", trained.run, "--fold", "sub09"), "no fold 'sub09'",
           "casme2/sub01")
