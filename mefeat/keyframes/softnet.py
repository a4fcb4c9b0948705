"""SoftNet's labels and interval rule: per-frame scores of a long video to intervals.

SoftNet (Liong, See, Wong & Liong 2021, "Shallow optical flow three-stream CNN for
macro- and micro-expression spotting from long videos"; the MEGC 2022 spotting baseline,
genbing99/SoftNet-SpotME @dd43d1e, ``training.py``) regresses, for every frame t of a
video, whether the window of frames t..t+k-1 overlaps an expression (:func:`frame_labels`,
lines 23-33: 1 when the window's IoU with an expression's frames onset+1..offset is above
0, else 0; the last k frames have no flow and no label). At test time the scores are
averaged over 2k frames (:func:`smooth_scores`, lines 141-143), peaks above
mean + p (max - mean) at least k frames apart are found (:func:`score_intervals`, lines
152-153; SoftNet fixes p = 0.55 for every dataset and kind, line 186) and each peak f
becomes the interval f-k..f+k (line 157, in SoftNet's trimmed coordinates peak-k..peak+k
with the ground truth shifted by -k, the same frames).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SOFTNET_P = 0.55
# k per dataset and kind: SoftNet computes k = (N+1)//2 from the mean length N of the
# dataset's expressions of the kind (load_label.py 93-99); these are its values for
# CAS(ME)^2 (30 fps) and SAMM Long Videos (200 fps). CAS(ME)^3's 30-fps videos take
# CAS(ME)^2's.
SOFTNET_K = {"casme-sq": {"micro": 6, "macro": 18}, "samm-long": {"micro": 37, "macro": 174},
             "casme3a-long": {"micro": 6, "macro": 18}}


def frame_labels(n_frames: int, expressions: Iterable[tuple[int, int]], k: int) -> np.ndarray:
    """SoftNet's 0/1 label of frames 0..n-k-1 (float32, length ``n_frames - k``): 1 where
    frames t..t+k-1 share a frame with onset+1..offset of one of ``expressions`` (0-based
    onset and offset, as SoftNet's ``arange(on0 + 1, off0 + 1)``)."""
    n = max(n_frames - k, 0)
    y = np.zeros(n, np.float32)
    for onset, offset in expressions:
        if offset <= onset:  # SoftNet's frames onset+1..offset are none
            continue
        # t..t+k-1 meets onset+1..offset  <=>  t <= offset and t + k - 1 >= onset + 1
        lo, hi = max(onset + 2 - k, 0), min(offset, n - 1)
        if lo <= hi:
            y[lo:hi + 1] = 1
    return y


def smooth_scores(scores: np.ndarray, k: int, n_frames: int) -> np.ndarray:
    """The score of every frame (length ``n_frames``): frame x + k gets the mean of the
    raw scores x..x+2k-1 (SoftNet's ``agg``); frames without a full window are NaN."""
    s = np.asarray(scores, np.float64)
    out = np.full(n_frames, np.nan)
    if len(s) >= 2 * k and k >= 1:
        c = np.concatenate([[0.0], np.cumsum(s)])
        means = (c[2 * k:] - c[:-2 * k]) / (2 * k)  # x = 0 .. len(s) - 2k
        out[k:k + len(means)] = means[:n_frames - k]
    return out


def _scored(curve: np.ndarray) -> tuple[int, np.ndarray]:
    """The first frame with a score and the scores from it to the last (SoftNet's
    ``agg[k:-k]``, the frames with a full window)."""
    c = np.asarray(curve, np.float64)
    idx = np.flatnonzero(np.isfinite(c))
    return (int(idx[0]), c[idx[0]:idx[-1] + 1]) if len(idx) else (0, c[:0])


def threshold(curve: np.ndarray, p: float) -> float:
    """mean + p (max - mean) of the frames with a score (``training.py`` 152)."""
    _, inner = _scored(curve)
    if not len(inner):
        return np.inf
    mean = float(inner.mean())
    return mean + p * (float(inner.max()) - mean)


def score_intervals(curve: np.ndarray, k: int, p: float) -> list[tuple[int, int, int, float]]:
    """The intervals ``(onset, peak, offset, score)`` of a smoothed curve (NaN where no
    score): peaks of the scored frames at least ``threshold(curve, p)`` high and ``k``
    frames apart, each as frames peak-k..peak+k (clipped to the video)."""
    from scipy.signal import find_peaks

    first, inner = _scored(curve)
    if not len(inner):
        return []
    n = len(curve)
    peaks, _ = find_peaks(inner, height=threshold(curve, p), distance=max(k, 1))
    return [(max(f - k, 0), f, min(f + k, n - 1), float(curve[f]))
            for f in (int(q) + first for q in peaks)]
