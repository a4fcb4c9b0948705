"""The regions-of-interest image of a flow that a SoftNet-style spotter reads (42x42x3).

SoftNet (Liong et al. 2021, the MEGC 2022 spotting baseline; genbing99/SoftNet-SpotME
@dd43d1e, ``extraction_preprocess.py``) turns the TV-L1 flow between frames t and t+k of a
128-px face into one small image:

- channels u, v and optical strain (:func:`mefeat.flow.optical_strain`; SoftNet takes
  forward differences, lines 11-17, mefeat central ones);
- the head's own motion removed: the mean of an 11x11 patch around the nose (landmark 28)
  subtracted, u and v then taken in absolute value, strain not (lines 86-87, 104-106);
- the eyes masked (blinks are no expression): the polygons of landmarks 36-41 and 42-47
  pushed 15 px outwards set to 0 (lines 39-65, 109-112);
- two boxes 12 px around their landmarks: the brows and eyes (17.x to 26.x, min(19.y, 24.y)
  to max(41.y, 46.y)) and the mouth (60.x to 64.x, 50.y to 57.y) (lines 68-83);
- each box resized to 42x21, the brows on rows 0-20 and the mouth on rows 21-41 (lines
  114-117). SoftNet scales each channel to [0, 1] per sample when it trains
  (``training.py`` 66-70); :func:`roi_image` leaves that to the model's input.

The landmarks are in the aligned face's pixels; SoftNet's margins are for a 128-px face and
scale with ``face_size``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .maps import optical_strain

ROI_SIZE = 42
_EYES = (slice(36, 42), slice(42, 48))


def _box(x0: float, y0: float, x1: float, y1: float, size: int) -> tuple[int, int, int, int]:
    c = lambda v: int(np.clip(round(v), 0, size))  # noqa: E731
    x0, y0, x1, y1 = c(x0), c(y0), c(x1), c(y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"a region of interest is empty ({x0}, {y0}, {x1}, {y1}) in a "
                         f"{size}-px face: the landmarks are not on the face")
    return x0, y0, x1, y1


def roi_layout(landmarks: np.ndarray, face_size: int) -> dict:
    """Where :func:`roi_image` looks, from (68, 2) landmarks in aligned pixels: the two boxes
    ``(x0, y0, x1, y1)``, the nose patch and the eye polygons (JSON-able lists)."""
    p = np.asarray(landmarks, np.float64)
    s = face_size / 128  # SoftNet's margins are in pixels of a 128-px face
    m, e, n = 12 * s, 15 * s, max(1, round(5 * s))
    brows = _box(p[17, 0] - m, min(p[19, 1], p[24, 1]) - m, p[26, 0] + m,
                 max(p[41, 1], p[46, 1]) + m, face_size)
    mouth = _box(p[60, 0] - m, p[50, 1] - m, p[64, 0] + m, p[57, 1] + m, face_size)
    eyes = []
    for sl in _EYES:
        q = p[sl].copy()
        q[0, 0] -= e  # outer/inner corners out in x, upper lids up, lower lids down
        q[3, 0] += e
        q[1:3, 1] -= e
        q[4:6, 1] += e
        eyes.append(np.clip(q, 0, face_size).round().astype(int).tolist())
    nx, ny = (int(round(v)) for v in p[28])
    return {"brows": list(brows), "mouth": list(mouth), "eyes": eyes,
            "nose": [max(nx - n, 0), max(ny - n, 0), nx + n + 1, ny + n + 1]}


def roi_image(flow: np.ndarray, layout: dict) -> np.ndarray:
    """The (42, 42, 3) float32 image [|u|, |v|, strain] of a flow (H, W, 2) (module
    docstring), regions from :func:`roi_layout`."""
    strain = optical_strain(flow)
    x0, y0, x1, y1 = layout["nose"]
    nose = flow[y0:y1, x0:x1].reshape(-1, 2).mean(axis=0)
    img = np.dstack([np.abs(flow[..., 0] - nose[0]), np.abs(flow[..., 1] - nose[1]),
                     strain - strain[y0:y1, x0:x1].mean()]).astype(np.float32)
    mask = np.zeros(flow.shape[:2], np.uint8)
    for poly in layout["eyes"]:
        cv2.fillPoly(mask, [np.asarray(poly, np.int32)], 1)
    img[mask.astype(bool)] = 0
    out = np.empty((ROI_SIZE, ROI_SIZE, 3), np.float32)
    half = ROI_SIZE // 2
    for rows, name in ((slice(0, half), "brows"), (slice(half, ROI_SIZE), "mouth")):
        x0, y0, x1, y1 = layout[name]
        out[rows] = cv2.resize(img[y0:y1, x0:x1], (ROI_SIZE, half))  # bilinear, as SoftNet
    return out
