"""Apex spotting: the frame of strongest expression between a clip's onset and offset.

Both methods read the clip's aligned grayscale frames ``(T, H, W)`` uint8 (faces already
aligned with one similarity transform per clip and cropped square, as
:mod:`mefeat.face` makes them: eyes level at 36 % of the height, 32 % of the width apart)
and score every frame ``t`` in ``[onset, offset]`` by how far the face has moved away
from the onset frame; the apex is the frame of the highest smoothed score strictly
between onset and offset.

- ``flowpeak``: dense optical flow from the onset frame (Farneback 2003, on frames
  reduced to 112 px), global drift removed by subtracting the median flow over the face,
  mean flow magnitude inside an elliptic face mask. Micro-expression apex spotting by
  optical-flow magnitude is common practice (e.g. the ME spotting baselines surveyed by
  Oh et al., Frontiers in Psychology 2018); this is a plain, landmark-free version of it.
- ``featdiff``: the appearance feature-difference method after Liong et al., "Automatic
  apex frame spotting in micro-expression database" (ACPR 2015) and "Less is more:
  Micro-expression recognition from video using apex frame" (Signal Processing: Image
  Communication 62, 2018): LBP histograms in the eye-and-brow and mouth regions, the
  chi-squared distance of each frame's histograms to the onset frame's, peak of the
  curve. The papers take the regions from facial landmarks; here they are fixed boxes of
  the aligned face, each frame is first registered to the onset frame by a global
  translation, and the peak is the argmax of the smoothed curve rather than the
  divide-and-conquer search of the ACPR paper.

Neither method has official code; the settings are in :data:`SPOT_DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from mefeat.errors import MefeatError
from mefeat.flow import farneback

# Settings of each method, recorded in the store by the ``spot`` key-frame policy. The
# keys named in _TUNABLE are passed to the curve function by spot_apex, so what is
# recorded is what runs; the other entries describe the fixed parts.
SPOT_DEFAULTS: dict[str, dict[str, Any]] = {
    "flowpeak": {
        "size": 112,
        "flow": "farneback",
        "farneback": {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3,
                      "poly_n": 5, "poly_sigma": 1.2},
        "drift": "median over the face mask",
        "mask": "ellipse centre (0.5, 0.52) semi-axes (0.38, 0.46) of the width/height",
        "smooth": 3,
    },
    "featdiff": {
        "size": 112,
        "register": True,
        "registration": "global translation to the onset frame (phase correlation, bicubic)",
        "blur": 1.0,
        "lbp": "uniform P=8 R=1 (skimage), 10 bins",
        "regions": "eyes+brows y 0.14-0.46 x 0.16-0.50 / 0.50-0.84, mouth y 0.56-0.86 "
                   "x 0.26-0.74 of the aligned face",
        "grid": 5,
        "distance": "chi-squared to the onset frame, summed over blocks",
        "smooth": 3,
    },
}

_TUNABLE: dict[str, tuple[str, ...]] = {
    "flowpeak": ("size",),
    "featdiff": ("size", "grid", "blur", "register"),
}

# Fixed boxes (y0, y1, x0, x1) as fractions of the aligned face; see the module docstring.
_FEATDIFF_REGIONS: tuple[tuple[float, float, float, float], ...] = (
    (0.14, 0.46, 0.16, 0.50),  # image-left eye and brow
    (0.14, 0.46, 0.50, 0.84),  # image-right eye and brow
    (0.56, 0.86, 0.26, 0.74),  # mouth
)


def _check_clip(frames: np.ndarray, onset: int, offset: int) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(
            "frames: expected aligned grayscale frames of shape (T, H, W) and dtype uint8, "
            f"got {getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}"
        )
    if not 0 <= onset < offset < len(frames) or offset - onset < 2:
        raise MefeatError(
            f"apex spotting needs 0 <= onset < offset < T and offset - onset >= 2 "
            f"(an apex strictly between), got onset={onset}, offset={offset}, T={len(frames)}"
        )


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:] == (size, size):
        return frames
    # INTER_AREA averages pixels, which also lowers the sensor noise.
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def smooth_curve(curve: np.ndarray, width: int = 3) -> np.ndarray:
    """Centred moving average of odd ``width``; the ends repeat the edge values."""
    if width <= 1:
        return np.asarray(curve, dtype=np.float64)
    if width % 2 == 0:
        raise ValueError(f"smoothing width must be odd, got {width}")
    half = width // 2
    padded = np.pad(np.asarray(curve, dtype=np.float64), half, mode="edge")
    return np.convolve(padded, np.full(width, 1.0 / width), mode="valid")


def face_mask(height: int, width: int) -> np.ndarray:
    """Boolean elliptic mask of the face on an aligned crop (see :data:`SPOT_DEFAULTS`)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = 0.52 * height, 0.5 * width
    ry, rx = 0.46 * height, 0.38 * width
    return ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0


def flowpeak_curve(frames: np.ndarray, onset: int, offset: int, *, size: int = 112) -> np.ndarray:
    """Motion score of every frame in ``[onset, offset]`` relative to the onset frame.

    Farneback flow from the reduced onset frame to each reduced frame; the median flow
    inside the face mask (the face's own drift: alignment is fixed per clip, so head
    movement shows as a near-uniform flow, while expression motion covers a minority of
    the face) is subtracted; the score is the mean magnitude of the rest inside the mask.

    Returns:
        float64 array of length ``offset - onset + 1``; element 0 (the onset) is 0.
    """
    _check_clip(frames, onset, offset)
    small = _resize(frames[onset:offset + 1], size)
    mask = face_mask(size, size)
    fb = SPOT_DEFAULTS["flowpeak"]["farneback"]
    ref = small[0]
    curve = np.zeros(len(small))
    for i in range(1, len(small)):
        inside = farneback(ref, small[i], **fb)[mask]
        inside = inside - np.median(inside, axis=0)
        curve[i] = float(np.hypot(inside[:, 0], inside[:, 1]).mean())
    return curve


def _lbp_histograms(image: np.ndarray, grid: int) -> np.ndarray:
    """Normalised uniform-LBP histograms (P=8, R=1: 10 bins) of each block of each region."""
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(image, 8, 1, method="uniform").astype(np.int64)
    h, w = image.shape
    hists = []
    for y0, y1, x0, x1 in _FEATDIFF_REGIONS:
        ys = np.linspace(round(y0 * h), round(y1 * h), grid + 1).round().astype(int)
        xs = np.linspace(round(x0 * w), round(x1 * w), grid + 1).round().astype(int)
        for r in range(grid):
            for c in range(grid):
                block = codes[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
                hist = np.bincount(block.ravel(), minlength=10).astype(np.float64)
                hists.append(hist / max(hist.sum(), 1.0))
    return np.stack(hists)


def _register_translation(frames: np.ndarray) -> np.ndarray:
    """Shift every frame onto the first by the global translation phase correlation finds."""
    ref = frames[0].astype(np.float32)
    h, w = ref.shape
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    out = [frames[0]]
    for f in frames[1:]:
        (dx, dy), _ = cv2.phaseCorrelate(ref, f.astype(np.float32), window)
        m = np.float32([[1, 0, -dx], [0, 1, -dy]])
        out.append(cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def chi_squared(h1: np.ndarray, h2: np.ndarray) -> float:
    """Chi-squared distance sum((h1 - h2)^2 / (h1 + h2)) over bins where h1 + h2 > 0."""
    num = (h1 - h2) ** 2
    den = h1 + h2
    ok = den > 0
    return float((num[ok] / den[ok]).sum())


def featdiff_curve(
    frames: np.ndarray, onset: int, offset: int, *, size: int = 112, grid: int = 5,
    blur: float = 1.0, register: bool = True,
) -> np.ndarray:
    """Feature difference of every frame in ``[onset, offset]`` to the onset frame.

    After Liong et al. 2015/2018 (see the module docstring). The frames are reduced to
    ``size`` px; each is shifted onto the onset frame by the global translation that
    phase correlation finds (bicubic; the papers register every frame to a face model,
    and the fine block grid below is otherwise dominated by head drift), blurred with a
    Gaussian of ``blur`` px (the interpolation and sensor noise flip LBP codes); uniform
    LBP (P=8, R=1) histograms of a ``grid`` x ``grid`` block split of each of the three
    regions (two eye-and-brow boxes, one mouth box); the chi-squared distance to the
    onset frame's histograms, summed over the blocks.

    Returns:
        float64 array of length ``offset - onset + 1``; element 0 (the onset) is 0.
    """
    _check_clip(frames, onset, offset)
    small = _resize(frames[onset:offset + 1], size)
    if register:
        small = _register_translation(small)
    if blur > 0:
        small = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in small])
    ref = _lbp_histograms(small[0], grid)
    curve = np.zeros(len(small))
    for i in range(1, len(small)):
        curve[i] = chi_squared(ref, _lbp_histograms(small[i], grid))
    return curve


SPOT_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "flowpeak": flowpeak_curve,
    "featdiff": featdiff_curve,
}


def spot_apex(frames: np.ndarray, onset: int, offset: int, method: str = "flowpeak") -> int:
    """The apex index of a clip: argmax of the method's smoothed score curve.

    The curve covers ``[onset, offset]`` (so the smoothing sees the rest frames at both
    ends); the argmax is taken over ``onset + 1 .. offset - 1`` only, so the result always
    satisfies ``onset < apex < offset``; ties go to the earliest frame.

    Args:
        frames: aligned grayscale frames (T, H, W) uint8 of the whole clip.
        onset, offset: indices into ``frames`` with ``offset - onset >= 2``.
        method: ``flowpeak`` or ``featdiff``.
    Returns:
        the apex as an index into ``frames``.
    """
    try:
        curve_fn = SPOT_METHODS[method]
    except KeyError:
        raise MefeatError(
            f"unknown apex spotting method {method!r}; choose one of {sorted(SPOT_METHODS)}"
        ) from None
    onset, offset = int(onset), int(offset)
    settings = SPOT_DEFAULTS[method]
    kwargs = {name: settings[name] for name in _TUNABLE[method]}
    curve = smooth_curve(curve_fn(frames, onset, offset, **kwargs), settings["smooth"])
    return onset + 1 + int(np.argmax(curve[1:-1]))


def spotting_errors(
    pred: Sequence[int] | np.ndarray,
    true: Sequence[int] | np.ndarray,
    *,
    within: Sequence[int] = (1, 2, 5),
) -> dict[str, float]:
    """Accuracy of spotted apexes against annotated ones (both as frame indices).

    Returns:
        ``{"n", "mean_abs_error", "median_abs_error", "max_abs_error",
        "within_1", "within_2", ...}`` where ``within_k`` is the fraction of clips with
        ``|pred - true| <= k`` frames.
    """
    p = np.asarray(pred, dtype=np.int64).ravel()
    t = np.asarray(true, dtype=np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("spotting_errors needs at least one clip")
    err = np.abs(p - t)
    out: dict[str, float] = {
        "n": int(err.size),
        "mean_abs_error": float(err.mean()),
        "median_abs_error": float(np.median(err)),
        "max_abs_error": float(err.max()),
    }
    for k in within:
        out[f"within_{int(k)}"] = float((err <= k).mean())
    return out
