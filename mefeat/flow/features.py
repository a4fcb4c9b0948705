"""Flow features of one clip for one set of key frames (what a variant row holds).

By default the flow is computed on the aligned frames at their stored size, and a view
that needs a smaller input resizes the maps. ``size`` instead computes it on the frames
resized to ``size`` first (``cv2.INTER_CUBIC``), as the OFF-TANet repository computes its
TV-L1 on 28-, 112- or 224-px frames (``data.py`` L50-63); the two differ (their maps
correlate at a median of 0.53 on the composite at 28 px), so the choice is a named variant.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .maps import direction_map, magnitude, optical_strain
from .methods import compute_flow


def phase_maps(prev: np.ndarray, next_: np.ndarray, method: str, params: dict[str, Any]):
    """u/v flow, strain, magnitude and direction map between two aligned frames.

    Returns channel-first arrays: flow (2, H, W), strain (1, H, W), mag (1, H, W) float32
    and dir (3, H, W) uint8 (BGR, Algorithm 1).
    """
    flow = compute_flow(prev, next_, method, **params)
    return {
        "flow": flow.transpose(2, 0, 1),
        "strain": optical_strain(flow)[None],
        "mag": magnitude(flow)[None],
        "dir": direction_map(flow).transpose(2, 0, 1),
    }


def clip_features(
    frames: np.ndarray, onset: int, apex: int, offset: int, method: str, params: dict[str, Any],
    *, size: int | None = None,
) -> dict[str, np.ndarray]:
    """Every map of a variant for one clip: onset→apex (``_oa``) and apex→offset (``_ao``),
    at the frames' size, or on the frames resized to ``size`` (see the module doc)."""

    def frame(t: int) -> np.ndarray:
        f = frames[t]
        if size is None or f.shape == (size, size):
            return f
        return cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC)

    out = {}
    for phase, (a, b) in {"oa": (onset, apex), "ao": (apex, offset)}.items():
        for name, value in phase_maps(frame(a), frame(b), method, params).items():
            out[f"{name}_{phase}"] = value
    return out
