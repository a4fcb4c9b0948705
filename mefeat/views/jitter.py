"""Key-frame jitter for views that eat aligned frames: every frame a training draw may take,
read from the store once, and the draws.

A recipe's :class:`~mefeat.recipes.KeyframeJitter` (MMNet's training-time onset and
apex draws) changes a training sample's key frames every epoch. Rebuilding a view from the
store every epoch would read whole clips; instead :func:`frame_bank` keeps, per sample and
key frame, the few frames a draw can take, as one uint8 bank, and the trainer turns drawn
bank rows into model inputs on its device with the view's ``jitter`` function (the same
arithmetic as the view, so a draw of the annotated frames gives the view's own inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mefeat.errors import MefeatError


@dataclass
class JitteredFrames:
    """The frames a training draw may take, and how they become model inputs.

    Attributes:
        bank: (M, S, S) uint8 frames, at the size the view's inputs have ((M, S, S, 3) RGB
            for a colour view).
        start: (N, K) first bank row of each sample's candidates for each key frame.
        count: (N, K) number of candidates (consecutive bank rows).
        keys: names of the K key frames (``("onset", "apex")``).
        to_inputs: ``to_inputs(frames)`` with ``frames`` a (B, K, S, S[, 3]) uint8 tensor gives
            the model's input tensors (a module-level function: picklable).
    """

    bank: np.ndarray
    start: np.ndarray
    count: np.ndarray
    keys: tuple[str, ...]
    to_inputs: Callable

    def draw(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(len(samples), K) bank rows: for each sample and key frame, one of its candidate
        frames, uniformly (Python's inclusive ``random.randint`` over the range)."""
        samples = np.asarray(samples, np.int64)
        offset = rng.integers(0, self.count[samples])
        return self.start[samples] + offset

    def subset(self, keep: np.ndarray) -> JitteredFrames:
        """The same bank for the samples ``keep`` (indices or a mask) only."""
        return JitteredFrames(self.bank, self.start[keep], self.count[keep], self.keys,
                              self.to_inputs)


def frame_bank(
    clips: Callable[[int], np.ndarray], keyframes: np.ndarray,
    ranges: Callable[[int, int, int], Sequence[range]], *, size: int,
    keys: tuple[str, ...], to_inputs: Callable, colour: bool = False,
) -> JitteredFrames:
    """Build the bank for N samples.

    Args:
        clips: ``clips(i)`` gives sample i's aligned frames (T, S0, S0) uint8.
        keyframes: (N, 3) onset, apex, offset indices the draws are centred on.
        ranges: ``ranges(onset, apex, offset)`` gives one ``range`` of frame indices per key
            frame (``KeyframeJitter.ranges``).
        size: side of the bank's frames (the view's input size; frames are resized with
            ``cv2.INTER_AREA``, as the view resizes them).
        colour: a bank of (size, size, 3) RGB frames; a grayscale clip's frames are repeated
            over the three channels.
    """
    rows, start, count = [], [], []
    n_rows = 0
    for i, (o, a, f) in enumerate(np.asarray(keyframes, np.int64)):
        clip = clips(i)
        s_i, c_i = [], []
        for key, r in zip(keys, ranges(int(o), int(a), int(f)), strict=True):
            idx = [t for t in r if 0 <= t < len(clip)]
            if not idx:
                raise MefeatError(f"sample {i}: no frame for the {key} jitter range {r}")
            for t in idx:
                frame = clip[t]
                if frame.shape[:2] != (size, size):
                    frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
                if colour and frame.ndim == 2:
                    frame = np.repeat(frame[..., None], 3, axis=-1)
                rows.append(frame)
            s_i.append(n_rows)
            c_i.append(len(idx))
            n_rows += len(idx)
        start.append(s_i)
        count.append(c_i)
    bank = np.stack(rows) if rows else np.zeros((0, size, size) + ((3,) if colour else ()),
                                                np.uint8)
    return JitteredFrames(bank, np.asarray(start, np.int64).reshape(-1, len(keys)),
                          np.asarray(count, np.int64).reshape(-1, len(keys)), keys, to_inputs)
