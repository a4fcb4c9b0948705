"""Alignment of a long video on a schedule: the face found every ``every`` frames, one
transform held until the head has moved.

A clip is aligned with one transform from its onset frame (:func:`mefeat.face.align_clip`):
over a second the head barely moves. Over a recording of minutes it does, so one transform
would let the face drift out of its place. Landmarks on every frame (or transforms
interpolated between detections) would follow the head but add the predictor's jitter (a
pixel or so of shift, scale and rotation) to every frame, which a spotter takes for motion:
on the demo's long videos a still face then scores like a micro-expression.

So the face is found on anchor frames (:func:`anchor_frames`, every ``every`` frames and
the last), and the transform in use is kept while each anchor's own transform places the
face within ``tolerance`` pixels of it (:func:`point_shift`); at the first anchor beyond,
that anchor's transform takes over (:func:`hold_transforms`), and every frame uses the
transform of the last anchor at or before it (:func:`step_transforms`). Frames between two
switches are aligned exactly alike, as a clip is, and the drift of the face from its place
is bounded by ``tolerance`` plus the head's travel within ``every`` frames (and the jitter
of one detection). An anchor where no face is found, or whose transform jumps from both
neighbours by more than ``max_jump`` pixels (a landmark fit on something else), takes its
neighbours' interpolation (:func:`repair_anchors`), and both are reported.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def anchor_frames(n_frames: int, every: int) -> np.ndarray:
    """Frame indices 0, every, 2 every, ... and the last frame (int64, increasing)."""
    if n_frames < 1 or every < 1:
        raise ValueError(f"need n_frames >= 1 and every >= 1, got {n_frames}, {every}")
    idx = list(range(0, n_frames, every))
    if idx[-1] != n_frames - 1:
        idx.append(n_frames - 1)
    return np.asarray(idx, dtype=np.int64)


def interpolate_transforms(anchors: np.ndarray, matrices: np.ndarray,
                           frames: np.ndarray) -> np.ndarray:
    """The (N, 2, 3) transforms of ``frames``: each the linear interpolation of the
    matrices of the anchors (increasing frame indices) on either side of it; constant
    beyond the first and last anchor."""
    anchors = np.asarray(anchors, dtype=np.float64)
    flat = np.asarray(matrices, dtype=np.float64).reshape(len(anchors), 6)
    t = np.asarray(frames, dtype=np.float64)
    out = np.stack([np.interp(t, anchors, flat[:, j]) for j in range(6)], axis=-1)
    return out.reshape(len(t), 2, 3)


def point_shift(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """How far (pixels of the aligned face) the two transforms place the face apart: the
    largest distance between the images of the aligned frame's corners under ``b``
    composed with the inverse of ``a``."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    inv_a = np.linalg.inv(np.vstack([a, [0, 0, 1]]))
    src = np.c_[corners, np.ones(4)] @ inv_a.T  # aligned by a -> source pixels
    moved = src @ np.vstack([b, [0, 0, 1]]).T
    return float(np.max(np.hypot(*(moved[:, :2] - corners).T)))


def hold_transforms(matrices: np.ndarray, *, size: int,
                    tolerance: float) -> tuple[np.ndarray, list[int]]:
    """The transform in use from each anchor on (A, 2, 3): the previous one while the
    anchor's own places the face within ``tolerance`` pixels of it, else the anchor's own;
    and the indices of the anchors where it changed (0 first)."""
    matrices = np.asarray(matrices, np.float64)
    held = matrices.copy()
    switches = [0]
    for i in range(1, len(matrices)):
        if point_shift(held[i - 1], matrices[i], size) > tolerance:
            switches.append(i)
        else:
            held[i] = held[i - 1]
    return held, switches


def step_transforms(anchors: np.ndarray, held: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The (N, 2, 3) transforms of ``frames``: each that of the last anchor at or before it
    (the first anchor's before the first)."""
    i = np.searchsorted(np.asarray(anchors), np.asarray(frames), side="right") - 1
    return np.asarray(held)[np.clip(i, 0, len(anchors) - 1)]


class Schedule(NamedTuple):
    """Anchor frames and their transforms after repair, and what was repaired
    (``{"frame", "reason"}``)."""

    anchors: np.ndarray
    matrices: np.ndarray
    repaired: list[dict]


def repair_anchors(anchors: np.ndarray, matrices: list[np.ndarray | None], reasons: list[str],
                   *, size: int, max_jump: float) -> Schedule:
    """Fill the anchors without a transform (``None``, with its reason in ``reasons``) and
    replace those jumping more than ``max_jump`` aligned pixels from both neighbours, by
    interpolating the others. Raises ``ValueError`` when no anchor has a transform.

    The first and last anchors with a face have one neighbour and are not checked, and two
    neighbouring bad anchors (each close to the other) pass: the check catches a single
    landmark fit gone astray."""
    anchors = np.asarray(anchors)
    ok = np.array([m is not None for m in matrices])
    if not ok.any():
        raise ValueError("no anchor frame has a face")
    repaired = [{"frame": int(a), "reason": r} for a, m, r in
                zip(anchors, matrices, reasons, strict=True) if m is None]
    filled = np.stack([m if m is not None else np.zeros((2, 3)) for m in matrices])
    good = np.flatnonzero(ok)
    for i in good[1:-1] if len(good) > 2 else ():
        pos = int(np.searchsorted(good, i))
        prev, nxt = good[pos - 1], good[pos + 1]
        if min(point_shift(filled[prev], filled[i], size),
               point_shift(filled[nxt], filled[i], size)) > max_jump:
            ok[i] = False
            repaired.append({"frame": int(anchors[i]), "reason": (
                f"the face jumped more than {max_jump:g} px from both neighbouring anchors")})
    keep = np.flatnonzero(ok)
    matrices_out = interpolate_transforms(anchors[keep], filled[keep], anchors)
    return Schedule(anchors, matrices_out, sorted(repaired, key=lambda r: r["frame"]))
