"""Flow features of one clip for one set of key frames (what a variant row holds)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mefeat.flow import compute_flow, direction_map, magnitude, optical_strain


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
    frames: np.ndarray, onset: int, apex: int, offset: int, method: str, params: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Every map of a variant for one clip: onset→apex (``_oa``) and apex→offset (``_ao``)."""
    out = {}
    for phase, (a, b) in {"oa": (onset, apex), "ao": (apex, offset)}.items():
        for name, value in phase_maps(frames[a], frames[b], method, params).items():
            out[f"{name}_{phase}"] = value
    return out
