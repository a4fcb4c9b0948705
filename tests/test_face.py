"""Alignment on the real face photograph."""

from __future__ import annotations

import numpy as np
import pytest

from mefeat.errors import FaceNotFoundError
from mefeat.face import AlignConfig, FaceAligner, similarity_from_landmarks
from mefeat.synth import Pose, face_photo, pose_image


def _eyes(lm):
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


def test_68_landmarks_on_the_real_photo(aligner):
    lm = aligner.landmarks(face_photo())
    assert lm.shape == (68, 2)
    left, right = _eyes(lm)
    assert right[0] - left[0] > 40  # two distinct eyes, left of image first


@pytest.mark.parametrize("angle", [-10.0, 0.0, 7.0])
def test_alignment_levels_the_eyes_at_a_fixed_distance(aligner, angle):
    image, _ = pose_image(face_photo(), Pose(angle=angle, scale=0.9))
    cfg = aligner.config
    aligned, lm = aligner.align(np.stack([image, image]), 0)
    assert aligned.shape == (2, cfg.size, cfg.size) and aligned.dtype == np.uint8
    left, right = _eyes(lm)
    assert abs(right[1] - left[1]) < 1.0  # eyes level
    assert np.hypot(*(right - left)) == pytest.approx(cfg.eye_distance * cfg.size, rel=0.02)
    mid = (left + right) / 2
    assert mid == pytest.approx([cfg.size / 2, cfg.eye_height * cfg.size], abs=1.0)
    # the landmarks found again on the aligned image agree with the transformed ones
    again = aligner.landmarks(aligned[0])
    assert np.abs(again - lm).mean() < 3.0


def test_one_transform_for_the_whole_clip(aligner):
    photo = face_photo()
    shifted = np.roll(photo, 5, axis=1)  # the face moves in frame 2: alignment must not follow
    aligned, _ = aligner.align(np.stack([photo, shifted]), 0)
    diff = aligned[1].astype(int) - aligned[0].astype(int)
    assert np.abs(diff).mean() > 5


def test_similarity_refuses_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        similarity_from_landmarks(np.zeros((5, 2)), AlignConfig())


def test_no_face_is_a_clear_error(aligner):
    blank = np.full((240, 320), 128, np.uint8)
    with pytest.raises(FaceNotFoundError, match="sub01/EP01: no face found"):
        aligner.landmarks(blank, where="sub01/EP01")


def test_two_faces_is_a_clear_error(aligner):
    face = face_photo()[0:260, 120:380]
    two = np.hstack([face, face])
    with pytest.raises(FaceNotFoundError) as err:
        aligner.landmarks(two, where="casme2/sub01/EP01")
    msg = str(err.value)
    assert err.value.key == "casme2/sub01/EP01"
    assert msg.startswith("casme2/sub01/EP01: 2 faces found in the onset frame"), msg
    # says what to do, and only what the code supports (no box/landmark override exists)
    assert "crop every frame of the clip to the subject's face" in msg, msg
    assert "run extract again" in msg and "remove the clip from the annotation" in msg, msg
    # one copy of the same face is aligned fine: the remedy works
    assert aligner.landmarks(np.ascontiguousarray(two[:, :260])).shape == (68, 2)


def test_config_size_is_honoured():
    aligner = FaceAligner(AlignConfig(size=112))
    aligned, lm = aligner.align(face_photo()[None], 0)
    assert aligned.shape == (1, 112, 112)
    # brows, eyes, nose and mouth lie inside the crop (the jaw line may leave it)
    assert lm[17:].max() < 112 and lm[17:].min() > 0
