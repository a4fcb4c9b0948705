"""Reading clips: a folder of frame files (listed by frame number) or a video, into one
grayscale array (and, for colour sources, one colour array), with errors that name the
file."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mefeat.errors import MefeatError, SampleError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _decode(path: Path, flag: int, *, key: str) -> np.ndarray:
    # np.fromfile + imdecode handles non-ASCII paths, which cv2.imread does not everywhere.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SampleError(key, f"cannot read image {path}: {exc.strerror}") from None
    if data.size == 0:
        raise SampleError(key, f"image {path} is an empty file; restore it from the dataset")
    img = cv2.imdecode(data, flag)
    if img is None:
        raise SampleError(key, f"image {path} is not a readable image (corrupt?); restore it")
    return img


def read_gray(path: Path, *, key: str) -> np.ndarray:
    """One image file as grayscale uint8 (H, W)."""
    return _decode(Path(path), cv2.IMREAD_GRAYSCALE, key=key)


def read_color(path: Path, *, key: str) -> np.ndarray:
    """One image file as BGR uint8 (H, W, 3), as ``cv2.imread`` gives it."""
    return _decode(Path(path), cv2.IMREAD_COLOR, key=key)


def read_clip(paths: Sequence[Path], *, key: str) -> np.ndarray:
    """All frames of a clip as (T, H, W) uint8; every frame must have the same size."""
    if not paths:
        raise SampleError(key, "the clip has no frames")
    frames = [read_gray(Path(p), key=key) for p in paths]
    first = frames[0].shape
    for p, f in zip(paths, frames, strict=True):
        if f.shape != first:
            raise SampleError(
                key,
                f"frame {p} is {f.shape[1]}×{f.shape[0]} but {paths[0]} is "
                f"{first[1]}×{first[0]}; all frames of a clip must have one size: restore "
                "that frame from the dataset",
            )
    return np.stack(frames)


def read_colour_clip(paths: Sequence[Path], *, key: str) -> np.ndarray | None:
    """All frames of a clip in colour, (T, H, W, 3) uint8 **RGB**, or ``None`` where the
    source is grayscale (single-channel files, or three equal channels in every frame).
    The grayscale clip stays :func:`read_clip`'s: OpenCV decodes a JPEG's luma directly,
    which is not always the rounding of a conversion from these colour frames."""
    frames = [read_color(Path(p), key=key) for p in paths]
    if all((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in frames):
        return None
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


def check_keyframes(key: str, n_frames: int, onset: int, apex: int, offset: int) -> None:
    """Key-frame indices must lie in the clip, in order, and span at least two frames.

    The apex may equal the offset (or the onset): two clips of the MEGC 2019 composite are
    annotated so (CASME II sub12/EP09_06, sub25/EP18_04f); that phase's flow is then zero.
    """
    if not (0 <= onset <= apex <= offset < n_frames and onset < offset):
        raise SampleError(
            key,
            f"key frames onset={onset}, apex={apex}, offset={offset} (indices) must satisfy "
            f"0 <= onset <= apex <= offset < {n_frames} (frames in the clip) with "
            "onset < offset; fix the annotation",
        )


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: a file name's undecodable bytes come back from the
    file system as surrogates, which cannot name a store folder or a sample."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def frame_number(name: str) -> int | None:
    """The frame number of an image file: the last run of digits in its stem.

    ``img46.jpg`` → 46, ``reg_img46.jpg`` → 46, ``006_05562.jpg`` → 5562,
    ``image17581039.jpg`` → 17581039. ``None`` when the stem has no digit.
    """
    m = _LAST_NUMBER.search(Path(name).stem)
    return int(m.group(1)) if m else None


def list_frames(
    folder: Path, *, key: str, pattern: re.Pattern[str] | None = None
) -> list[tuple[int, Path]]:
    """Image files of a clip folder as ``(frame number, path)``, sorted by frame number.

    Sorting by number, not by name, because names are not zero padded the same way
    everywhere (CASME II ``img9``/``img10``; SAMM pads to 4 or 5 digits). ``pattern``,
    when given, must match the whole file name and its group 1 is the frame number.
    Raises :class:`SampleError` when the folder is missing or has no frames, or when two
    files carry the same frame number.
    """
    if not folder.is_dir():
        raise SampleError(
            key, f"frame folder {folder} does not exist; check the dataset root and the clip's "
            "name in the annotation file")
    found: dict[int, Path] = {}
    with os.scandir(folder) as it:
        for entry in it:
            p = Path(entry.path)
            if p.suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue
            if pattern is not None:
                m = pattern.fullmatch(p.name)
                num = int(m.group(1)) if m else None
            else:
                num = frame_number(p.name)
            if num is None:
                continue
            if num in found:
                raise SampleError(
                    key, f"{found[num].name} and {p.name} in {folder} both are frame {num}; "
                    "remove the copy"
                )
            found[num] = p
    if not found:
        what = f" named like {pattern.pattern!r}" if pattern is not None else ""
        raise SampleError(
            key, f"frame folder {folder} has no image files{what}; restore the clip's frames"
        )
    return sorted(found.items())


class ClipError(MefeatError):
    """A clip or video that cannot be read as frames."""


@dataclass
class Clip:
    """The raw frames of a clip or video: (T, H, W) uint8 grayscale, and (T, H, W, 3) RGB
    ``colour`` where they were asked for and the source has colour."""

    path: Path
    frames: np.ndarray
    kind: str  # "frames" (a folder) or "video"
    fps: float | None = None
    colour: np.ndarray | None = None


def read_frames(path: str | os.PathLike, *, colour: bool = False) -> Clip:
    """A folder of frames (sorted by the number in their names, as the dataset readers sort
    them) or a video file (``cv2.VideoCapture``, converted with ``cv2.COLOR_BGR2GRAY``);
    ``colour``: also the colour frames (:func:`read_colour_clip`'s rule)."""
    path = Path(path)
    if path.is_dir():
        paths = [p for _, p in list_frames(path, key=str(path))]
        return Clip(path, read_clip(paths, key=str(path)), "frames",
                    colour=read_colour_clip(paths, key=str(path)) if colour else None)
    if not path.is_file():
        raise ClipError(f"{path}: no such file or folder; give a folder of frames or a "
                        "video file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ClipError(f"{path}: one image is not a clip; give the folder of the clip's "
                        "frames or a video file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipError(
                f"{path}: cannot be opened as a video (not a video, corrupt, or a codec "
                "OpenCV's FFmpeg does not read); convert it to mp4/avi or give a folder of "
                "frames"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        frames, rgb = [], []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.ndim == 3:
                if colour:
                    rgb.append(cv2.cvtColor(frame[..., :3], cv2.COLOR_BGR2RGB))
                code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
                frame = cv2.cvtColor(frame, code)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise ClipError(f"{path}: no frame could be decoded from the video (empty or "
                        "corrupt); re-encode it or give a folder of frames")
    kept = None
    if rgb and len(rgb) == len(frames) and not all(
            (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in rgb):
        kept = np.stack(rgb)
    return Clip(path, np.stack(frames), "video", fps, colour=kept)
