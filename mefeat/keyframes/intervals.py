"""Expression intervals in a long video: where the face moves away from rest and back.

A clip of one expression has its onset and offset given (or taken as its first and last
frame); a longer video has to be searched for them. The video is cut into overlapping
windows (:func:`window_starts`); in each window the motion score of every frame is the
``flowpeak`` spotter's curve (:func:`mefeat.keyframes.spotting.flowpeak_curve`: Farneback
flow from the window's first frame on 112-px frames, the face's median drift removed, the
mean magnitude inside the face ellipse, in pixels of the 112-px face) smoothed over 3 frames
(:func:`motion_curve`). :func:`curve_intervals` then takes the peaks above a threshold,
highest first; a peak's interval runs from the last frame before it whose score is below
the rest level to the first frame after it below that level (default rest level: half the
threshold), each then moved outwards to the foot of the curve. A peak whose score does not
fall back to rest before the window ends is not an interval of that window: the expression
goes on past it, or the window began inside an expression (its reference frame is not at
rest, so the score never returns to zero). A later window holds such an expression whole,
with a rest frame first, whenever the expression is at most ``window - stride`` frames
long. :func:`merge_intervals` joins the intervals that different windows found for one
expression.

Indices are 0-based frame positions; :class:`Interval` holds them and the peak score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from .spotting import SPOT_DEFAULTS, flowpeak_curve, smooth_curve


class Interval(NamedTuple):
    """A span of motion: ``onset < peak < offset`` (frame indices) and the peak's score."""

    onset: int
    peak: int
    offset: int
    score: float

    def shifted(self, by: int) -> Interval:
        """The same interval with every index moved by ``by`` frames."""
        return Interval(self.onset + by, self.peak + by, self.offset + by, self.score)


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """First frames of the windows of ``window`` frames, ``stride`` apart, that cover
    ``n_frames``; the last window ends on the last frame (it may overlap its neighbour by
    more than the others do). One window at 0 when the video is no longer than ``window``.
    """
    if window < 3 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 3 and 1 <= stride <= window, got window={window}, "
                         f"stride={stride}")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def motion_curve(frames: np.ndarray) -> np.ndarray:
    """The smoothed flowpeak score of every frame of aligned ``frames`` (T, H, W) uint8
    against its first frame: float64 (T,), element 0 near 0 (see the module docstring)."""
    settings = SPOT_DEFAULTS["flowpeak"]
    curve = flowpeak_curve(frames, 0, len(frames) - 1, size=settings["size"])
    return smooth_curve(curve, settings["smooth"])


def curve_intervals(
    curve: np.ndarray, *, threshold: float, rest: float | None = None,
    open_end: bool = False,
) -> list[Interval]:
    """Intervals of a window's motion curve, sorted by onset.

    Peaks are taken highest first while their score exceeds ``threshold``; each claims the
    frames from its onset (the last frame before it scoring below ``rest``, else frame 0)
    to its offset (the first frame after it below ``rest``), both moved outwards while the
    score keeps falling (to the foot of the curve, where the motion starts and ends), and
    later peaks are sought outside the frames already claimed. A peak with no frame below
    ``rest`` after it is dropped (its frames stay claimed), unless ``open_end`` (the window
    ends the video): then its offset is the last frame. Intervals shorter than 3 frames
    are dropped.

    Args:
        curve: (T,) score of each frame of the window.
        threshold: the least peak score of an interval.
        rest: the score below which the face is at rest; default ``threshold / 2``.
        open_end: the window's last frame is the video's.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"expected a curve of shape (T,), got {c.shape}")
    rest = threshold / 2 if rest is None else rest
    if not 0 <= rest <= threshold:
        raise ValueError(f"need 0 <= rest <= threshold, got rest={rest}, threshold={threshold}")
    below = c < rest
    claimed = np.zeros(len(c), bool)
    found = []
    while True:
        free = np.where(claimed, -np.inf, c)
        peak = int(np.argmax(free)) if len(c) else 0
        if not len(c) or free[peak] <= threshold:
            break
        before = np.flatnonzero(below[:peak])
        onset = int(before[-1]) if before.size else 0
        after = np.flatnonzero(below[peak + 1:])
        offset = peak + 1 + int(after[0]) if after.size else len(c) - 1
        # Out to the foot of the rise and of the fall: the score below the rest level
        # still falls towards the frames where the motion starts and ends.
        while onset > 0 and not claimed[onset - 1] and c[onset - 1] < c[onset]:
            onset -= 1
        while (after.size and offset < len(c) - 1 and not claimed[offset + 1]
               and c[offset + 1] < c[offset]):
            offset += 1
        claimed[onset:offset + 1] = True
        if (after.size or open_end) and offset - onset >= 2:
            found.append(Interval(onset, peak, offset, float(c[peak])))
    return sorted(found)


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Join intervals that share more than one frame (two windows' views of one expression)
    into their union, keeping the higher peak; sorted by onset. Intervals that only touch
    (one's offset is the next one's onset, a rest frame between two expressions) stay
    apart."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.onset < out[-1].offset:
            last = out[-1]
            best = last if last.score >= iv.score else iv
            out[-1] = Interval(min(last.onset, iv.onset), best.peak,
                               max(last.offset, iv.offset), best.score)
        else:
            out.append(iv)
    return out


class VideoSearch(NamedTuple):
    """What :func:`search_video` found: the merged intervals, the windows it could not use
    (``{"window": [first, last], "reason"}``) and each window's motion curve."""

    intervals: list[Interval]
    skipped: list[dict]
    curves: list[tuple[int, np.ndarray]]


def search_video(frames: np.ndarray, aligner, *, window: int, stride: int, threshold: float,
                 where: str = "video", progress: bool = False) -> VideoSearch:
    """The expression intervals of a long video (T, H, W): every window aligned on its own
    first frame (``aligner``: a :class:`mefeat.face.FaceAligner`), its motion curve's
    intervals (:func:`curve_intervals`), merged over windows. A window with no face is
    skipped with the reason; a video in which no window has one raises the first error."""
    def aligned(start: int, stop: int) -> np.ndarray:
        return aligner.align(frames[start:stop], 0, where=f"{where} (frame {start})")[0]

    return search_windows(aligned, len(frames), window=window, stride=stride,
                          threshold=threshold, progress=progress, desc="predict: windows")


def search_windows(aligned: Callable[[int, int], np.ndarray], n_frames: int, *, window: int,
                   stride: int, threshold: float, progress: bool = False,
                   desc: str = "windows") -> VideoSearch:
    """:func:`search_video` over windows whose aligned frames ``aligned(start, stop)``
    gives (or raises :class:`~mefeat.errors.FaceNotFoundError` for): frames aligned per
    window, or a long video's frames aligned once (``mefeat spot-long``)."""
    from tqdm import tqdm

    from mefeat.errors import FaceNotFoundError

    n = n_frames
    skipped: list[dict] = []
    found: list[Interval] = []
    curves = []
    first_error: FaceNotFoundError | None = None
    for start in tqdm(window_starts(n, window, stride), desc=desc, unit="window",
                      disable=not progress):
        stop = min(start + window, n)
        try:
            frames = aligned(start, stop)
        except FaceNotFoundError as exc:
            first_error = first_error or exc
            skipped.append({"window": [start, stop - 1], "reason": exc.reason})
            continue
        curve = motion_curve(frames)
        curves.append((start, curve))
        found += [iv.shifted(start) for iv in
                  curve_intervals(curve, threshold=threshold, open_end=stop == n)]
    if not curves and first_error is not None:
        raise first_error  # no window has a face: the video's own fault
    return VideoSearch(merge_intervals(found), skipped, curves)
