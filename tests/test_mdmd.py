"""MDMD, the MEGC 2020 spotting baseline, on hand-made flows and feature curves (expected
values worked out from MDMD.m / cmd.m by hand), and on a synthetic long video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefeat.keyframes.challenge import Expression, spotting_scores
from mefeat.keyframes.mdmd import (
    MDMD_SETTINGS,
    MdmdSetting,
    effective_k,
    frame_feature,
    marked_frames,
    matlab_round,
    mdmd_spot,
    runs,
)


@pytest.mark.parametrize("x, r", [(0.5, 1), (1.5, 2), (2.5, 3), (-0.5, -1), (4 / 3, 1),
                                  (12.0, 12), (1 / 3, 0)])
def test_matlab_round_takes_halves_away_from_zero(x, r):
    assert matlab_round(x) == r


def _blocks(values):
    """A 12x12 flow pair from four 6x6 blocks (blocks=2): values[b] = (u, v, u2, v2)."""
    f1, f2 = np.zeros((12, 12, 2), np.float32), np.zeros((12, 12, 2), np.float32)
    for b, (u, v, u2, v2) in enumerate(values):
        r, c = divmod(b, 2)
        sl = np.s_[r * 6:(r + 1) * 6, c * 6:(c + 1) * 6]
        f1[sl + (0,)], f1[sl + (1,)], f2[sl + (0,)], f2[sl + (1,)] = u, v, u2, v2
    return f1, f2


def test_frame_feature_is_the_top_third_of_the_main_direction():
    # block 0: u = 1..36, v = 1 -> directions in [0, 90), |flow1| - |flow2| = hypot(u, 1);
    # the top round(36/3) = 12 are u = 25..36. The other blocks: u = 0, v = -1 -> atan(-0)
    # = -0 degrees, in [0, 90) too, difference 1. The frame: the top round(4/3) = 1 block.
    u = np.arange(1, 37, dtype=np.float32).reshape(6, 6)
    f1, f2 = _blocks([(u, 1, 0, 0), (0, -1, 0, 0), (0, -1, 0, 0), (0, -1, 0, 0)])
    expected = np.mean([np.hypot(x, 1) for x in range(25, 37)])
    assert frame_feature(f1, f2, blocks=2) == pytest.approx(expected)


def test_the_main_direction_is_the_bin_with_most_pixels_not_the_largest_motion():
    # 20 pixels at -45 degrees moving 5 px, 16 at +45 degrees moving 100 px: the block's
    # value is 5 (top round(20/3) = 7 of the 20); the other blocks: 1 each.
    u = np.full((6, 6), -5 / np.sqrt(2), np.float32)
    v = np.full((6, 6), 5 / np.sqrt(2), np.float32)
    u.flat[20:] = v.flat[20:] = 100 / np.sqrt(2)
    f1, f2 = _blocks([(u, v, 0, 0), (0, -1, 0, 0), (0, -1, 0, 0), (0, -1, 0, 0)])
    assert frame_feature(f1, f2, blocks=2) == pytest.approx(5.0)


def test_a_block_without_motion_makes_the_frame_nan_as_in_matlab():
    f1, f2 = _blocks([(1, 1, 0, 0), (0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 0, 0)])
    assert np.isnan(frame_feature(f1, f2, blocks=2))


def test_contrast_threshold_marks_the_centre_frame():
    # k = 2, m = 1: C[j] = F[j+1] - (F[j] + F[j+2]) / 2 for j < 10 - 4 - 2 = 4:
    # C = [0, 0, -3, 6], T = 0.75 + 0.01 (6 - 0.75) = 0.8025: j = 3 only, frame 3 + k + m = 6
    # (F[4] is the feature of frame 4 + k = 6).
    features = np.zeros(10)
    features[4] = 6.0
    assert marked_frames(features, 2, 0.01).tolist() == [6]
    assert marked_frames(features, 2, 0.99).tolist() == [6]  # T = 5.9475 < 6
    assert marked_frames(features[:5], 2, 0.01).tolist() == []  # no contrast to compute


def test_runs_and_k_halving():
    assert runs(np.array([12, 3, 4, 5, 9, 10])) == [(3, 5), (9, 10), (12, 12)]
    assert effective_k(1000, 12) == 12  # 1000 - 6*12 >= 0
    assert effective_k(60, 12) == 6  # 60 - 72 < 0 -> round(6) = 6: 60 - 36 >= 0
    assert effective_k(30, 12) == 3  # 30 - 72 < 0, 30 - 36 < 0, 30 - 18 >= 0
    assert effective_k(20, 5) == 3  # round(2.5) = 3 in MATLAB (2 in Python)
    assert effective_k(4, 12) == 1  # where MATLAB's loop would never end (round(1/2) = 1)


def test_mdmd_spots_a_micro_expression_of_a_synthetic_long_video(aligned_face):
    # One micro-expression (frames 50..62, 13 frames: CAS(ME)^2's micro lengths are 7..16),
    # a blink and a slow head drift on a real face, 30 fps: the micro run finds it.
    from mefeat.synth import LongEvent, make_long_video

    image, landmarks = aligned_face
    events = [LongEvent("happiness", 50, 56, 62, 1.5, "micro"), LongEvent("blink", 95, 97, 99, 3.0)]
    video = make_long_video(image, landmarks, events, n_frames=130, drift=1.0, noise=0.5)
    spotted = mdmd_spot(video, MDMD_SETTINGS["casme2"]["micro"], flow="farneback")
    truth = [Expression("v", 50, 62)]
    found = spotting_scores(truth, [Expression("v", a, b) for a, b in spotted])["micro"]
    assert found["tp"] == 1, spotted
    assert all(7 <= b - a + 1 <= 16 for a, b in spotted)
    assert mdmd_spot(video, MdmdSetting(12, 7, 16), p=0.99, flow="farneback") == []


def test_rlof_is_opencvs_dense_flow_in_mefeats_convention():
    # the baseline's flow: a face moved 1 px right and 2 px down moves by (u, v) = (1, 2)
    from mefeat.keyframes.mdmd import rlof
    from mefeat.synth import face_photo

    face = cv2.resize(face_photo()[100:260, 170:330], (64, 64), interpolation=cv2.INTER_AREA)
    moved = np.roll(face, (2, 1), axis=(0, 1))
    flow = rlof(face, moved)
    assert flow.shape == (64, 64, 2)
    inner = flow[8:-8, 8:-8].reshape(-1, 2)
    assert np.median(inner, axis=0) == pytest.approx([1.0, 2.0], abs=0.1)
