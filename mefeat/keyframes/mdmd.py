"""MDMD, the MEGC 2020 long-video spotting baseline: Main Directional Maximal Difference
(Wang, Li, Yap, "Main Directional Maximal Difference Analysis for Spotting Facial Movements
from Long-Term Videos", Neurocomputing 2017), as the organisers' baseline code computes it
(HeyingGithub/Baseline-project-for-MEGC2020_spotting @7d186cf, cited as A).

Per frame i (``MDMD_codes/MDMD.m``): the flows F(i-k)→F(i) and F(i-k)→F(i+k) (:5-10, RLOF
there); the face cut into 6×6 blocks of ``floor(H/6) × floor(W/6)`` pixels (:17-34); in each
block the direction ``atan(u/v)`` in degrees binned into [0, 90), [90, 180), [-180, -90),
[-90, 0) (:11, :38-41; with ``atan``, not ``atan2``, the middle two bins only take ±90°),
the bin with the most pixels (the first on a tie) is the main direction (:46), and its
pixels' ``|flow1| - |flow2|``, sorted descending, give the block the mean of their top
``round(m/3)`` (:50-63); the frame's feature is the mean of the top ``round(36/3)`` block
values (:67-69). MATLAB's ``round`` (half away from zero) is kept, and so are its NaNs: a
block without a direction (all 0/0) or with ``round(m/3) = 0`` has no mean, and MATLAB's
descending sort puts NaN first, so the frame's feature is NaN.

Contrast and threshold (``MDMD_codes/cmd.m:47-86``): ``k`` is halved (``round``) while
``n - 2k - 4k < 0``; with ``m = k - 1``, ``C(j) = F(j+m) - (F(j) + F(j+2m)) / 2`` for the
first ``len(F) - 2k - 2m`` features, ``T = mean(C) + p (max(C) - mean(C))``, and the frames
with ``C > T`` are marked (a NaN in C makes T NaN and marks nothing, as in MATLAB).
``MDMDmat_to_txt.m:41-51`` turns runs of marked frames into intervals, and the evaluation
keeps those whose length ``offset - onset + 1`` lies in the kind's range
(``MDMD_results/evaluation_all_p.py:14-25``). The published baseline uses ``p = 0.01`` (A's
README; ``gen_MEGC2020_log_file.py``: ``p = 1`` of 1..99).

The flow: A calls RLOF (``mex_RLOF`` with ``gridSize`` 1, ``RLOF_fun.m``); ``flow="rlof"``
is OpenCV's dense RLOF (the same authors' implementation, ``cv2.optflow``, grid step 1 by
default: about 1 s per 112-px frame pair on one core), and ``flow`` may also name any of
mefeat's flow methods (``farneback``: 6 ms) for speed, which is then no longer A's MDMD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from mefeat.flow import compute_flow


@dataclass(frozen=True)
class MdmdSetting:
    """One dataset's and kind's MDMD setting: the frame gap ``k`` (``cmd.m:23-31``) and the
    interval lengths kept (``evaluation_all_p.py:14-25``; ``longest=None``: no upper bound)."""

    k: int
    shortest: int
    longest: int | None


MDMD_SETTINGS: dict[str, dict[str, MdmdSetting]] = {
    # CAS(ME)^2, 30 fps
    "casme2": {"micro": MdmdSetting(12, 7, 16), "macro": MdmdSetting(39, 17, None)},
    # SAMM Long Videos, 200 fps
    "samm": {"micro": MdmdSetting(80, 47, 105), "macro": MdmdSetting(260, 106, None)},
}


def matlab_round(x: float) -> int:
    """MATLAB's ``round``: halves away from zero (Python's rounds them to even)."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def rlof(prev: np.ndarray, next_: np.ndarray, *, grid_step: int = 1) -> np.ndarray:
    """OpenCV's dense RLOF flow (H, W, 2) between two grayscale uint8 frames."""
    a, b = (cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in (prev, next_))
    return cv2.optflow.calcOpticalFlowDenseRLOF(a, b, None, gridStep=(grid_step, grid_step))


def _flow_fn(flow: str, params: dict | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    params = dict(params or {})
    if flow == "rlof":
        return lambda a, b: rlof(a, b, **params)
    return lambda a, b: compute_flow(a, b, flow, **params)


def frame_feature(flow1: np.ndarray, flow2: np.ndarray, *, blocks: int = 6) -> float:
    """MDMD's feature of one frame from its two flows (see the module doc)."""
    u, v = flow1[..., 0].astype(np.float64), flow1[..., 1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.degrees(np.arctan(u / v))
    rho = np.hypot(u, v) - np.hypot(flow2[..., 0].astype(np.float64),
                                    flow2[..., 1].astype(np.float64))
    h, w = (s // blocks for s in theta.shape)
    values = []
    for r in range(blocks):
        for c in range(blocks):
            t = theta[r * h:(r + 1) * h, c * w:(c + 1) * w].ravel()
            d = rho[r * h:(r + 1) * h, c * w:(c + 1) * w].ravel()
            bins = [(t >= 0) & (t < 90), (t >= 90) & (t < 180), (t >= -180) & (t < -90),
                    (t >= -90) & (t < 0)]
            counts = [int(b.sum()) for b in bins]
            main = int(np.argmax(counts))  # the first bin of the largest count
            top = matlab_round(counts[main] / 3)
            values.append(np.sort(d[bins[main]])[::-1][:top].mean() if top else np.nan)
    vals = np.asarray(values)
    # MATLAB's sort(..., 'descend') puts NaN first
    ordered = np.concatenate([vals[np.isnan(vals)], np.sort(vals[~np.isnan(vals)])[::-1]])
    return float(ordered[:matlab_round(blocks * blocks / 3)].mean())


def mdmd_features(frames: np.ndarray, k: int, *, blocks: int = 6, flow: str = "rlof",
                  flow_params: dict | None = None) -> np.ndarray:
    """F[n] for n = 0..T-2k-1: the MDMD feature of frame ``n + k`` of ``frames`` (T, H, W)
    uint8 (``MDMD.m``: frames n, n+k, n+2k)."""
    fn = _flow_fn(flow, flow_params)
    n = len(frames) - 2 * k
    return np.array([frame_feature(fn(frames[i], frames[i + k]), fn(frames[i], frames[i + 2 * k]),
                                   blocks=blocks) for i in range(max(n, 0))])


def effective_k(n_frames: int, k: int) -> int:
    """``cmd.m:47-51``: k halved (MATLAB ``round``) while ``n - 2k - 4k < 0``, stopping at 1
    (where the MATLAB loop, ``round(1/2) = 1``, would never end)."""
    while n_frames - 2 * k - 4 * k < 0 and k > 1:
        k = matlab_round(k / 2)
    return k


def marked_frames(features: np.ndarray, k: int, p: float) -> np.ndarray:
    """The frames (0-based) whose contrast exceeds the threshold (``cmd.m:61-81``)."""
    m = k - 1
    n = len(features) - 2 * k - 2 * m
    if n <= 0:
        return np.zeros(0, np.int64)
    j = np.arange(n)
    contrast = features[j + m] - (features[j] + features[j + 2 * m]) / 2
    threshold = contrast.mean() + p * (contrast.max() - contrast.mean())
    return np.flatnonzero(contrast > threshold) + k + m


def runs(marked: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive marked frames as (onset, offset), both included."""
    out: list[tuple[int, int]] = []
    for t in np.sort(np.asarray(marked, np.int64)):
        if out and t == out[-1][1] + 1:
            out[-1] = (out[-1][0], int(t))
        else:
            out.append((int(t), int(t)))
    return out


def mdmd_spot(frames: np.ndarray, setting: MdmdSetting, *, p: float = 0.01, blocks: int = 6,
              flow: str = "rlof", flow_params: dict | None = None) -> list[tuple[int, int]]:
    """MDMD's intervals (onset, offset; 0-based frames, both included) of one kind in a
    video (T, H, W) uint8: features, contrast, threshold ``p``, runs, the kind's lengths."""
    k = effective_k(len(frames), setting.k)
    features = mdmd_features(frames, k, blocks=blocks, flow=flow, flow_params=flow_params)
    return mdmd_intervals(features, k, setting, p)


def mdmd_intervals(features: np.ndarray, k: int, setting: MdmdSetting,
                   p: float = 0.01) -> list[tuple[int, int]]:
    """The intervals of :func:`mdmd_spot` from the features already computed with
    ``k = effective_k(...)``."""
    return [(a, b) for a, b in runs(marked_frames(features, k, p))
            if b - a + 1 >= setting.shortest
            and (setting.longest is None or b - a + 1 <= setting.longest)]
