"""The compiled Dual TV-L1 gives OpenCV's flow to the bit, and falls back to OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefeat.flow import dual_tvl1 as dt
from mefeat.flow import methods, tvl1
from mefeat.synth import make_clip

OPENCV_NAMES = {"inner_iterations": "innnerIterations", "outer_iterations": "outerIterations",
                "scale_step": "scaleStep", "median_filtering": "medianFiltering"}
DEFAULTS = dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01,
                inner_iterations=30, outer_iterations=10, scale_step=0.8, median_filtering=5)


@pytest.fixture(scope="module")
def inner():
    fn = dt.kernel()
    if fn is None:
        pytest.skip("no C++ compiler here: the compiled TV-L1 cannot be built")
    return fn


def opencv_tvl1(a, b, **params):
    named = {OPENCV_NAMES.get(k, k): v for k, v in params.items()}
    return cv2.optflow.DualTVL1OpticalFlow_create(**named).calc(a, b, None)


@pytest.fixture(scope="module")
def face_pair(aligned_face):
    face, landmarks = aligned_face
    clip, _ = make_clip(face, landmarks, "happiness", n_frames=3, onset=0, apex=1, offset=2,
                        peak=2.5, sigma=22)
    return clip[0], clip[1]


@pytest.mark.parametrize("params", [
    {},  # OpenCV's defaults, as extract runs them
    {"epsilon": 0.0, "outer_iterations": 2, "inner_iterations": 10},  # no early stop
    {"median_filtering": 3, "warps": 3, "scale_step": 0.5},
    {"median_filtering": 1, "nscales": 1, "tau": 0.2, "lambda_": 0.3, "theta": 0.5},
    {"scale_step": 0.7, "nscales": 4},  # 1/scale_step not exact in float
])
def test_bit_identical_to_opencv_on_the_face(face_pair, inner, params):
    p = {**DEFAULTS, **params}
    ours = dt.dual_tvl1(*face_pair, inner=inner, **p)
    ref = opencv_tvl1(*face_pair, **p)
    assert np.abs(ref).max() > 0.5  # a real flow, not two zero fields
    np.testing.assert_array_equal(ours, ref)


def test_bit_identical_on_noise_of_odd_size(inner):
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.integers(0, 256, (37, 53), dtype=np.uint8), (5, 5), 1.5)
    b = np.roll(a, (1, 2), axis=(0, 1))
    np.testing.assert_array_equal(dt.dual_tvl1(a, b, inner=inner, **DEFAULTS),
                                  opencv_tvl1(a, b))


def test_fortran_ordered_frames_and_a_bad_scale_step(inner):
    rng = np.random.default_rng(2)
    a = cv2.GaussianBlur(rng.integers(0, 256, (18, 24), dtype=np.uint8), (5, 5), 1.5)
    b = np.roll(a, 1, axis=1)
    at, bt = np.asfortranarray(a.T), np.asfortranarray(b.T)  # one pyramid level, F order
    np.testing.assert_array_equal(tvl1(at, bt, nscales=1, median_filtering=1),
                                  opencv_tvl1(at, bt, nscales=1, medianFiltering=1))
    with pytest.raises(ValueError, match="scale_step"):
        tvl1(a, b, scale_step=1.25)


def test_tvl1_takes_the_kernel_and_falls_back_to_opencv(face_pair, inner, monkeypatch):
    fast = tvl1(*face_pair)
    calls = []
    monkeypatch.setattr(methods, "dual_tvl1", lambda *a, **k: calls.append(1) or fast)
    tvl1(*face_pair)
    assert calls == [1]
    tvl1(*face_pair, gamma=0.1)  # the illumination term: OpenCV's implementation
    assert calls == [1]
    monkeypatch.setattr(methods, "dual_tvl1_kernel", lambda: None)  # no compiler
    np.testing.assert_array_equal(tvl1(*face_pair), fast)
    assert calls == [1]


def _opencv_update_sum(ix, iy, grad, rho, u1, u2, p11, p12, p21, p22, l_t, theta):
    """The stopping error of one OpenCV inner iteration (estimateV, divergence, estimateU),
    in numpy float32 with OpenCV's order of operations and its sequential float sum."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = rho + (ix * u1 + iy * u2)
        fi = -r / grad
        n = []
        for a, i, q1, q2 in ((u1, ix, p11, p12), (u2, iy, p21, p22)):
            d = np.where(r < -l_t * grad, l_t * i,
                         np.where(r > l_t * grad, -l_t * i,
                                  np.where(grad > np.finfo(np.float32).eps, fi * i, 0)))
            div = np.empty_like(a)
            div[1:, 1:] = (q1[1:, 1:] - q1[1:, :-1]) + (q2[1:, 1:] - q2[:-1, 1:])
            div[0, 1:] = q1[0, 1:] - q1[0, :-1] + q2[0, 1:]
            div[1:, 0] = q1[1:, 0] + q2[1:, 0] - q2[:-1, 0]
            div[0, 0] = q1[0, 0] + q2[0, 0]
            n.append((a + d.astype(np.float32)) + theta * div)
    e = (n[0] - u1) * (n[0] - u1) + (n[1] - u2) * (n[1] - u2)
    return np.cumsum(e.ravel(), dtype=np.float32)[-1]  # one float, pixel after pixel


def test_stopping_decision_is_opencvs_at_the_threshold(inner):
    # The kernel estimates the error sum in parallel and forms OpenCV's float sum only when
    # the estimate is too close to eps to decide: put eps exactly there.
    rng = np.random.default_rng(3)
    h, w = 61, 67
    f = lambda scale: (rng.standard_normal((h, w)) * scale).astype(np.float32)  # noqa: E731
    ix, iy, rho = f(10), f(10), f(20)
    grad = ix * ix + iy * iy
    state = [f(0.5), f(0.5), f(0.1), f(0.1), f(0.1), f(0.1)]  # u1, u2, p11, p12, p21, p22
    l_t, theta, taut = np.float32(0.15 * 0.3), np.float32(0.3), np.float32(0.25 / 0.3)
    error = _opencv_update_sum(ix, iy, grad, rho, *state, l_t, theta)
    assert error > 0
    for eps, iterations_done in ((error, 1), (np.nextafter(error, np.float32(0)), 2)):
        fields = [a.copy() for a in state]
        _, n = inner(ix, iy, grad, rho, *fields, l_t, theta, taut, eps, 2)
        assert n == iterations_done, (eps, error)


def test_fields_of_different_shapes_are_refused(inner):
    f = [np.zeros((8, 8), np.float32) for _ in range(10)]
    f[5] = np.zeros((8, 9), np.float32)
    with pytest.raises(ValueError, match="differ in shape"):
        inner(*f, 0.045, 0.3, 0.83, 0.0, 1)
