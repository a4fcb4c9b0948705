"""Maps derived from a dense flow: magnitude, optical strain, HSV direction map."""

from __future__ import annotations

import cv2
import numpy as np


def _check_flow(flow: np.ndarray) -> None:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"expected a flow of shape (H, W, 2), got {flow.shape}")


def magnitude(flow: np.ndarray) -> np.ndarray:
    """Per-pixel flow magnitude sqrt(u² + v²), shape (H, W) float32."""
    _check_flow(flow)
    return np.hypot(flow[..., 0], flow[..., 1]).astype(np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude, shape (H, W) float32.

    With the strain tensor ε = ½(∇w + ∇wᵀ) of the flow w = (u, v), the magnitude is
    sqrt(ε_xx² + ε_yy² + ε_xy² + ε_yx²) = sqrt(u_x² + v_y² + ½(u_y + v_x)²), as in
    Liong et al. (2014) and the STSTNet / Off-ApexNet feature code. Derivatives are central
    differences (``np.gradient``).
    """
    _check_flow(flow)
    u_y, u_x = np.gradient(flow[..., 0])
    v_y, v_x = np.gradient(flow[..., 1])
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def normalise_components(flow: np.ndarray) -> np.ndarray:
    """Min-max scale u and v, each on its own, to [0, 1] (Algorithm 1's normalisation).

    A constant component (no motion) maps to 0.
    """
    _check_flow(flow)
    out = np.empty_like(flow, dtype=np.float32)
    for c in range(2):
        comp = flow[..., c].astype(np.float32)
        lo, hi = float(comp.min()), float(comp.max())
        out[..., c] = (comp - lo) / (hi - lo) if hi > lo else 0.0
    return out


# What the direction map encodes (recorded in every variant's settings, so that a store
# made with another rule is refused rather than mixed).
DIRECTION_RULE = "hue = atan2(v_n, u_n)*90/pi, u and v min-max normalised each on its own"


def direction_map(flow: np.ndarray) -> np.ndarray:
    """The HSV direction map of the CausalNet supplement (Algorithm 1), as BGR uint8.

    The components are min-max normalised, each on its own (supplement Fig. 3); θ is the
    angle of (u_n, v_n), ``cv2.cartToPolar(u_n, v_n)``; hue = θ·180/(2π) in [0, 180),
    S = V = 255, HSV → BGR. Upward motion (small v_n) then gets a red hue and downward
    motion yellow-green, as the supplement's text says, and the maps equal the official
    ones: on the 442 composite samples of the official CausalNet features
    (``cde28_causalnet``, ``X_2`` from ``X``'s u and v) the hues correlate at 0.99 with
    this rule and at −0.99 with the argument order Algorithm 1 prints
    (``CartToPolar(flow[..., 1], flow[..., 0])``, which holds if its ``flow`` stacks
    (v, u), as the official u_v_os images do after the strain: tests/test_known_answers.py).

    Returns:
        uint8 array of shape (H, W, 3), BGR.
    """
    _check_flow(flow)
    f = normalise_components(flow)
    _, theta = cv2.cartToPolar(np.ascontiguousarray(f[..., 0]), np.ascontiguousarray(f[..., 1]))
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = np.clip(theta * 180.0 / (2 * np.pi), 0, 179).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
