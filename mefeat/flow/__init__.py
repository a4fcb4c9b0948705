"""Optical flow between key frames and the maps derived from it.

Pure functions on numpy arrays (kornia / scikit-image style): dense flow by TV-L1
(Zach, Pock & Bischof 2007, OpenCV's Dual TV-L1 in ``cv2.optflow``, run by a compiled
kernel with OpenCV's arithmetic where one can be built: ``dual_tvl1``), Farneback (2003) or
DIS (Kroeger et al. 2016); flow magnitude; optical strain (the STSTNet / Off-ApexNet
definition); and the HSV direction map of the CausalNet supplement's Algorithm 1.

Shapes: grayscale frames are ``(H, W)`` uint8; a flow is ``(H, W, 2)`` float32 with
``flow[..., 0] = u`` (horizontal, +x right) and ``flow[..., 1] = v`` (vertical, +y down),
OpenCV's convention.
"""

from __future__ import annotations

from .maps import direction_map, magnitude, normalise_components, optical_strain
from .methods import (
    FLOW_METHODS,
    compute_flow,
    dis,
    farneback,
    prepare_flow,
    register_flow,
    tvl1,
)

__all__ = [
    "FLOW_METHODS",
    "compute_flow",
    "direction_map",
    "dis",
    "farneback",
    "magnitude",
    "normalise_components",
    "optical_strain",
    "prepare_flow",
    "register_flow",
    "tvl1",
]
