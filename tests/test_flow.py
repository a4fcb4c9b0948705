"""Known-answer tests of the flow methods and the maps derived from flow."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefeat.flow import (
    FLOW_METHODS,
    compute_flow,
    direction_map,
    magnitude,
    optical_strain,
    tvl1,
)
from mefeat.synth import ACTIONS, make_clip


def _face_mask(shape, landmarks):
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(landmarks.astype(np.int32)), 1)
    return mask.astype(bool)


def _epe(a, b, mask):
    return float(np.hypot(*(a - b).transpose(2, 0, 1))[mask].mean())


@pytest.mark.parametrize("action", ["happiness", "disgust"])
def test_tvl1_recovers_known_motion_on_real_face(aligned_face, action):
    face, landmarks = aligned_face
    clip, truth = make_clip(face, landmarks, action, n_frames=3, onset=0, apex=1, offset=2,
                            peak=1.5, sigma=22)
    mask = _face_mask(face.shape, landmarks)
    zero_guess = _epe(np.zeros_like(truth), truth, mask)
    assert np.hypot(*truth.transpose(2, 0, 1)).max() == pytest.approx(1.5, abs=0.05)
    assert 0.25 < zero_guess < 0.40  # the motion is real and sizeable inside the face
    flow = tvl1(clip[0], clip[1])
    assert _epe(flow, truth, mask) <= 0.05


@pytest.mark.parametrize("method", sorted(FLOW_METHODS))
def test_zero_motion_gives_zero_flow(aligned_face, method):
    face, _ = aligned_face
    flow = compute_flow(face, face.copy(), method)
    assert flow.shape == face.shape + (2,) and flow.dtype == np.float32
    # Farneback leaves tiny artefacts on flat borders; the mean must still be ~0
    assert np.abs(flow).mean() < 1e-2
    if method != "farneback":
        assert np.abs(flow).max() < 1e-3


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_other_methods_beat_the_zero_guess(aligned_face, method):
    face, landmarks = aligned_face
    clip, truth = make_clip(face, landmarks, "surprise", n_frames=3, onset=0, apex=1,
                            offset=2, peak=1.5, sigma=22)
    mask = _face_mask(face.shape, landmarks)
    flow = compute_flow(clip[0], clip[1], method)
    assert _epe(flow, truth, mask) < 0.5 * _epe(np.zeros_like(truth), truth, mask)


def test_wrong_shapes_are_refused():
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="grayscale uint8"):
        tvl1(np.zeros((32, 32, 3), np.uint8), img)
    with pytest.raises(ValueError, match="differ in shape"):
        tvl1(img, np.zeros((16, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        optical_strain(np.zeros((8, 8, 3), np.float32))


def test_unknown_method_or_parameter_is_a_clear_error():
    from mefeat.errors import MefeatError

    img = np.zeros((16, 16), np.uint8)
    with pytest.raises(MefeatError, match="unknown flow method 'lk'"):
        compute_flow(img, img, "lk")
    with pytest.raises(MefeatError, match="farneback"):
        compute_flow(img, img, "farneback", nonsense=1)


def test_strain_of_a_uniform_stretch_is_known():
    # u = a·x gives u_x = a and nothing else: strain = |a| everywhere inside.
    a = 0.05
    xx = np.tile(np.arange(32, dtype=np.float32), (32, 1))
    flow = np.dstack([a * xx, np.zeros_like(xx)])
    assert np.allclose(optical_strain(flow), a, atol=1e-6)
    # a pure translation has no strain
    assert np.allclose(optical_strain(np.ones((16, 16, 2), np.float32)), 0)
    assert np.allclose(magnitude(np.full((4, 4, 2), [3.0, 4.0], np.float32)), 5.0)


def test_direction_map_follows_algorithm_1():
    flow = np.random.default_rng(0).normal(size=(16, 16, 2)).astype(np.float32)
    bgr = direction_map(flow)
    assert bgr.shape == (16, 16, 3) and bgr.dtype == np.uint8
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    # Algorithm 1's normalisation written out: u and v each min-max scaled on its own
    n = np.dstack([(c - c.min()) / (c.max() - c.min()) for c in (flow[..., 0], flow[..., 1])])
    theta = np.arctan2(n[..., 1], n[..., 0]) % (2 * np.pi)  # cartToPolar(x=u_n, y=v_n)
    expected_hue = theta * 180 / (2 * np.pi)
    # S = V = 255 and the hue is θ·180/2π (up to HSV→BGR→HSV rounding)
    assert (hsv[..., 1] >= 250).all() and (hsv[..., 2] >= 250).all()
    assert np.abs(hsv[..., 0].astype(float) - expected_hue).max() <= 2.0
    assert n.min() >= 0 and n.max() <= 1


def test_every_action_moves_the_face(aligned_face):
    face, landmarks = aligned_face
    for action in ACTIONS:
        clip, truth = make_clip(face, landmarks, action, n_frames=5, onset=0, apex=2,
                                offset=4, peak=1.0, sigma=12)
        assert np.abs(clip[2].astype(int) - clip[0].astype(int)).max() > 5
        assert np.array_equal(clip[0], clip[4])  # relaxed back at the offset


# -- written against the surviving mutants of `make mutants` (mefeat.flow.maps) ------------


def test_maps_are_float32_whatever_the_flow_dtype():
    from mefeat.flow import magnitude, normalise_components, optical_strain

    rng = np.random.default_rng(0)
    flow = rng.normal(size=(9, 11, 2))  # float64
    for fn in (magnitude, optical_strain, normalise_components):
        assert fn(flow).dtype == np.float32, fn.__name__
        assert fn(flow.astype(np.float32)).dtype == np.float32, fn.__name__


def test_normalise_components_is_the_float32_min_max_of_each_component():
    from mefeat.flow import normalise_components

    rng = np.random.default_rng(1)
    flow = np.dstack([rng.normal(0, 3, (13, 17)), rng.normal(1, 0.2, (13, 17))])
    flow = flow.astype(np.float32)
    got = normalise_components(flow)
    for c in (0, 1):
        x = flow[..., c]
        np.testing.assert_array_equal(got[..., c], (x - x.min()) / (x.max() - x.min()))
    # a component without motion range (a still face's v) maps to 0, not 0/0
    flow[..., 1] = 0.25
    got = normalise_components(flow)
    assert np.isfinite(got).all() and (got[..., 1] == 0).all()
