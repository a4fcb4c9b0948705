"""OpenCV's Dual TV-L1, step for step, with its inner iterations in a compiled kernel.

``cv2.optflow.DualTVL1OpticalFlow`` spends nearly all of its time in the inner iterations:
seven passes over the image per iteration, compiled for SSE3, with a scalar ``hypot`` call
per pixel. :func:`dual_tvl1` runs the same algorithm with OpenCV's own functions for
everything else (the pyramid ``cv2.resize``, the flow's zoom ``cv2.multiply``, the bicubic
warps ``cv2.remap``, the median filter ``cv2.medianBlur``) and the inner iterations in
``tvl1_cpu.cpp``, one fused pass per iteration with OpenCV's formulas and order of
operations, glibc's ``hypotf`` and the stopping decisions of OpenCV's float sum. The flows
are OpenCV's to the bit (``tests/test_flow_dual_tvl1.py``; checked on x86-64 Linux with
glibc and the OpenCV 5.0.0.93 and 5.1.0.95 wheels, over image sizes from 2×2 to 480×640
and non-default parameters). Every step that OpenCV's releases may compute differently is
OpenCV's own call, so the flows follow the installed release: 5.1 changed ``multiply`` by
a scalar (see :func:`dual_tvl1`), and a kernel with 5.0's arithmetic there differed from
5.1's TV-L1 by up to 0.11 px at ``scale_step=0.7``.

The bicubic warps stay OpenCV's own call on purpose: in the OpenCV wheels ``cv2.remap``
of a float image with ``INTER_CUBIC`` goes to Intel IPP (``ipp_hal_remap32f``), whose
arithmetic is not OpenCV's table-based one and not public, so only calling it gives the
same bits. They, the median filter and the rest cost about a third of the time.

The stages follow ``opencv_contrib/modules/optflow/src/tvl1flow.cpp``
(``OpticalFlowDual_TVL1::calc`` and ``procOneScale``), without ``gamma`` and initial flow.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from mefeat._cpp import Kernel, register_kernel

_FIELD = np.ctypeslib.ndpointer(np.float32, ndim=2, flags="C_CONTIGUOUS")
_C_FLOAT = ctypes.c_float
_FLT_MAX = float(np.finfo(np.float32).max)
InnerIterations = Callable[..., tuple[float, int]]

# no fused multiply-adds, and sqrt without errno (so that it vectorises)
KERNEL = register_kernel(Kernel("TV-L1", Path(__file__).with_name("tvl1_cpu.cpp"),
                                ("-ffp-contract=off", "-fno-math-errno")))


@functools.lru_cache(maxsize=1)
def kernel() -> InnerIterations | None:
    """The compiled inner iterations, or None where they cannot be built.

    The function takes ``(ix, iy, grad, rho, u1, u2, p11, p12, p21, p22, l_t, theta, taut,
    eps, iterations)``, the ten fields float32 (H, W) arrays in C order (the last six are
    updated in place), and returns ``(last error, iterations done)``; the error is OpenCV's
    float sum or an estimate on the same side of ``eps``.
    """
    lib = KERNEL.load()
    if lib is None:
        return None
    fn = lib.tvl1_inner_iterations
    fn.restype = ctypes.c_int
    fn.argtypes = [*[_FIELD] * 10, ctypes.c_int, ctypes.c_int, _C_FLOAT, _C_FLOAT, _C_FLOAT,
                   _C_FLOAT, ctypes.c_int, ctypes.POINTER(_C_FLOAT)]

    def inner_iterations(ix, iy, grad, rho, u1, u2, p11, p12, p21, p22, l_t, theta, taut,
                         eps, iterations):
        h, w = ix.shape
        for a in (iy, grad, rho, u1, u2, p11, p12, p21, p22):
            if a.shape != (h, w):
                raise ValueError(f"TV-L1 fields differ in shape: {a.shape} vs {(h, w)}")
        error = _C_FLOAT()
        n = fn(ix, iy, grad, rho, u1, u2, p11, p12, p21, p22, h, w, l_t, theta, taut, eps,
               iterations, ctypes.byref(error))
        return error.value, n

    return inner_iterations


def centered_gradient(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half the central differences; one-sided (and still halved) on the border."""
    dx = np.empty_like(img)
    dy = np.empty_like(img)
    half = np.float32(0.5)
    dx[:, 1:-1] = half * (img[:, 2:] - img[:, :-2])
    dx[:, 0] = half * (img[:, 1] - img[:, 0])
    dx[:, -1] = half * (img[:, -1] - img[:, -2])
    dy[1:-1] = half * (img[2:] - img[:-2])
    dy[0] = half * (img[1] - img[0])
    dy[-1] = half * (img[-1] - img[-2])
    return dx, dy


def _one_scale(inner: InnerIterations, i0: np.ndarray, i1: np.ndarray, u1: np.ndarray,
               u2: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    h, w = i0.shape
    i1x, i1y = centered_gradient(i1)
    grid_x = np.arange(w, dtype=np.float32)[None, :]
    grid_y = np.arange(h, dtype=np.float32)[:, None]
    dual = [np.zeros((h, w), np.float32) for _ in range(4)]  # p11, p12, p21, p22
    l_t = np.float32(p["lambda_"] * p["theta"])
    taut = np.float32(p["tau"] / p["theta"])
    eps = float(np.float32(p["epsilon"] * p["epsilon"] * (h * w)))
    for _ in range(p["warps"]):
        map_x, map_y = grid_x + u1, grid_y + u2
        i1w, i1wx, i1wy = (cv2.remap(img, map_x, map_y, cv2.INTER_CUBIC)
                           for img in (i1, i1x, i1y))
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        error = _FLT_MAX  # OpenCV's start value, and its test (`error > eps`, NaN included)
        for _ in range(p["outer_iterations"]):
            if not error > eps:
                break
            if p["median_filtering"] > 1:
                u1 = cv2.medianBlur(u1, p["median_filtering"])
                u2 = cv2.medianBlur(u2, p["median_filtering"])
            error, _ = inner(i1wx, i1wy, grad, rho_c, u1, u2, *dual, l_t, p["theta"], taut,
                             eps, p["inner_iterations"])
    return u1, u2


def dual_tvl1(prev: np.ndarray, next_: np.ndarray, *, inner: InnerIterations, tau: float,
              lambda_: float, theta: float, nscales: int, warps: int, epsilon: float,
              inner_iterations: int, outer_iterations: int, scale_step: float,
              median_filtering: int) -> np.ndarray:
    """TV-L1 flow from ``prev`` to ``next_`` (uint8, (H, W)); returns (H, W, 2) float32.

    ``inner`` is the function :func:`kernel` returns. The parameters are those of
    ``cv2.optflow.DualTVL1OpticalFlow_create`` (``gamma`` = 0).
    """
    params = dict(tau=tau, lambda_=lambda_, theta=theta, warps=warps, epsilon=epsilon,
                  inner_iterations=inner_iterations, outer_iterations=outer_iterations,
                  median_filtering=median_filtering)
    i0s = [np.ascontiguousarray(prev, np.float32)]
    i1s = [np.ascontiguousarray(next_, np.float32)]
    for _ in range(1, nscales):
        a = cv2.resize(i0s[-1], None, fx=scale_step, fy=scale_step,
                       interpolation=cv2.INTER_LINEAR)
        if a.shape[0] < 16 or a.shape[1] < 16:
            break
        i0s.append(a)
        i1s.append(cv2.resize(i1s[-1], None, fx=scale_step, fy=scale_step,
                              interpolation=cv2.INTER_LINEAR))
    u1 = np.zeros_like(i0s[-1])
    u2 = np.zeros_like(i0s[-1])
    # OpenCV's own multiply() by the scalar 1/scale_step, since its arithmetic is the
    # installed release's: OpenCV 5.0 multiplies a float32 image by a scalar in double and
    # rounds once, 5.1 rounds the scalar to float first (they differ in the last bit where
    # 1/scale_step is not exact in float, e.g. 0.7, and TV-L1 amplifies that bit).
    zoom = 1.0 / scale_step
    for s in range(len(i0s) - 1, -1, -1):
        u1, u2 = _one_scale(inner, i0s[s], i1s[s], u1, u2, params)
        if s == 0:
            break
        size = i0s[s - 1].shape[::-1]
        u1, u2 = (cv2.multiply(cv2.resize(u, size, interpolation=cv2.INTER_LINEAR), zoom)
                  for u in (u1, u2))
    return np.dstack([u1, u2])
