"""Reading a clip's frame files into one grayscale array, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mefeat.errors import SampleError


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
