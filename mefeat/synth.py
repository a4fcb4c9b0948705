"""Synthetic micro-expressions on a real face photograph, with known flow and apex.

The licensed datasets cannot ship, so tests and the demo make clips from scikit-image's
``astronaut`` photograph: a smooth local deformation (Gaussian bumps at the brows, the
mouth corners...) whose amplitude rises from onset to apex and relaxes to offset. The true
flow between any two frames is known, so flow accuracy and apex spotting can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Motion of each emotion: (landmark index, displacement direction (dx, dy)) pairs, in the
# iBUG 68-point layout. Directions are unit-ish; amplitudes are scaled to ``peak``.
ACTIONS: dict[str, tuple[tuple[int, tuple[float, float]], ...]] = {
    # AU1+2: brows raised
    "surprise": ((19, (0.0, -1.0)), (24, (0.0, -1.0)), (17, (0.0, -0.6)), (26, (0.0, -0.6))),
    # AU12: lip corners pulled up and out
    "happiness": ((48, (-0.7, -0.7)), (54, (0.7, -0.7))),
    # AU4+9: brows lowered and drawn together, nose wrinkled
    "disgust": ((21, (0.5, 0.8)), (22, (-0.5, 0.8)), (31, (0.0, -0.6)), (35, (0.0, -0.6))),
    # AU14/15: lip corners pressed in and down
    "repression": ((48, (0.6, 0.5)), (54, (-0.6, 0.5))),
    # AU4 alone
    "others": ((21, (0.4, 0.6)), (22, (-0.4, 0.6))),
}


def face_photo() -> np.ndarray:
    """The astronaut photograph (Eileen Collins, NASA; public domain) in grayscale uint8."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


def displacement_field(
    shape: tuple[int, int],
    landmarks: np.ndarray,
    action: str | tuple[tuple[int, tuple[float, float]], ...],
    *,
    peak: float,
    sigma: float,
) -> np.ndarray:
    """A smooth displacement field (H, W, 2) made of Gaussian bumps at the action's landmarks
    (an :data:`ACTIONS` name, or its (landmark, direction) pairs).

    Its largest magnitude is exactly ``peak`` pixels.
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for idx, (dx, dy) in ACTIONS[action] if isinstance(action, str) else action:
        cx, cy = landmarks[idx]
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        field[..., 0] += dx * g
        field[..., 1] += dy * g
    top = float(np.hypot(field[..., 0], field[..., 1]).max())
    return field * (peak / top) if top > 0 else field


def warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """The image whose content has moved by ``displacement``: out(y) = image(y - d(y))."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(
        image, (xx - displacement[..., 0]).astype(np.float32),
        (yy - displacement[..., 1]).astype(np.float32),
        interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT,
    )


def true_flow(displacement: np.ndarray, *, iterations: int = 8) -> np.ndarray:
    """Forward flow w from the undeformed image to ``warp(image, displacement)``.

    A pixel p of the first image is found at p + w(p) in the second, where
    w(p) = d(p + w(p)); solved by fixed-point iteration (d is smooth and small).
    """
    h, w = displacement.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = displacement.copy()
    for _ in range(iterations):
        flow = np.dstack([
            cv2.remap(displacement[..., c], xx + flow[..., 0], yy + flow[..., 1],
                      interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for c in range(2)
        ])
    return flow


def amplitude(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Motion amplitude per frame: 0 before onset, raised-cosine rise to 1 at the apex,
    raised-cosine relaxation to 0 at the offset, 0 after."""
    t = np.arange(n_frames, dtype=np.float64)
    a = np.zeros(n_frames)
    rise = (t >= onset) & (t <= apex)
    a[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - onset) / max(apex - onset, 1))
    fall = (t > apex) & (t <= offset)
    a[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - apex) / max(offset - apex, 1))
    return a


@dataclass(frozen=True)
class Pose:
    """How one synthetic subject differs from the photograph: pose and lighting."""

    angle: float = 0.0  # degrees
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    gain: float = 1.0
    gamma: float = 1.0
    gradient: float = 0.0  # left-to-right lighting slope, grey levels across the image


def pose_image(image: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Apply a pose and lighting to a photograph; returns the image and its 2×3 transform."""
    h, w = image.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), pose.angle, pose.scale)
    m[:, 2] += pose.shift
    # Replicate, not reflect, the border: a mirrored face would be a second face.
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    f = (out.astype(np.float32) / 255.0) ** pose.gamma * 255.0 * pose.gain
    f += np.linspace(-pose.gradient / 2, pose.gradient / 2, w, dtype=np.float32)[None, :]
    return np.clip(f, 0, 255).astype(np.uint8), m


def make_clip(
    image: np.ndarray,
    landmarks: np.ndarray,
    action: str,
    *,
    n_frames: int,
    onset: int,
    apex: int,
    offset: int,
    peak: float,
    sigma: float,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A clip (T, H, W) uint8 of ``action`` on ``image`` and its true onset→apex flow."""
    d = displacement_field(image.shape, landmarks, action, peak=peak, sigma=sigma)
    rng = np.random.default_rng(seed)
    frames = []
    for a in amplitude(n_frames, onset, apex, offset).astype(np.float32):
        f = warp(image, d * a).astype(np.float32)
        if noise:
            f += rng.normal(0, noise, f.shape)
        frames.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return np.stack(frames), true_flow(d)


# Distractors of a long video: motions that are no expression. A blink: both upper eyelids
# (landmarks 37, 38, 43, 44) move down and back within a few frames.
BLINK = ((37, (0.0, 1.0)), (38, (0.0, 1.0)), (43, (0.0, 1.0)), (44, (0.0, 1.0)))


@dataclass(frozen=True)
class LongEvent:
    """One motion of a synthetic long video: ``action`` (an :data:`ACTIONS` emotion, or
    ``"blink"``) over frames ``onset..offset`` with its apex, ``peak`` pixels at the apex;
    ``kind`` is ``micro`` or ``macro`` for an expression, ``None`` for a distractor."""

    action: str
    onset: int
    apex: int
    offset: int
    peak: float
    kind: str | None = None


def make_long_video(
    image: np.ndarray,
    landmarks: np.ndarray,
    events: tuple[LongEvent, ...] | list[LongEvent],
    *,
    n_frames: int,
    sigma: float = 18.0,
    drift: float = 0.0,
    drift_period: int = 300,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A long video (T, H, W) uint8: ``image`` at rest, each event's deformation with its
    raised-cosine amplitude (:func:`amplitude`) added where it occurs, and a slow head
    drift, a translation of up to ``drift`` pixels following a sine of ``drift_period``
    frames (no expression: a spotter should not report it)."""
    fields = []
    for e in events:
        blink = e.action == "blink"  # a narrower bump: the eyelid, not the brow
        d = displacement_field(image.shape, landmarks, BLINK if blink else e.action,
                               peak=e.peak, sigma=sigma / 3 if blink else sigma)
        fields.append((d, amplitude(n_frames, e.onset, e.apex, e.offset).astype(np.float32)))
    rng = np.random.default_rng(seed)
    frames = np.empty((n_frames,) + image.shape, np.uint8)
    for t in range(n_frames):
        total = np.zeros(image.shape + (2,), np.float32)
        for d, a in fields:
            if a[t]:
                total += d * a[t]
        shift = drift * np.sin(2 * np.pi * t / drift_period)
        total[..., 0] += shift
        f = warp(image, total).astype(np.float32)
        if noise:
            f += rng.normal(0, noise, f.shape)
        frames[t] = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return frames
