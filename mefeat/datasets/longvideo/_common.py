"""Records, cells and the join of the long-video readers (see :mod:`mefeat.datasets.longvideo`)."""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mefeat.datasets._base import cell_int, cell_text
from mefeat.datasets._sample import Dropped
from mefeat.errors import AnnotationError, DatasetLayoutError, SampleError
from mefeat.frames import list_frames

KINDS = ("micro", "macro")


@dataclass(frozen=True)
class LongVideo:
    """One long video: its frame files sorted by frame number, and its frame rate.

    ``frame_numbers[i]`` is the number in the name of ``frames[i]``; the numbers need not
    start at 1 nor be contiguous (CAS(ME)^3 lost frames), so positions and numbers differ.
    """

    dataset: str
    subject: str
    video: str
    frames: tuple[Path, ...]
    frame_numbers: tuple[int, ...]
    fps: float
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.video}"

    @property
    def first_frame(self) -> int:
        """The frame number of the first file (position 0)."""
        return self.frame_numbers[0]

    @property
    def n_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class LongRow:
    """One expression as the sheet gives it, before frames are looked up (frame numbers)."""

    dataset: str
    subject: str
    video: str
    name: str
    onset_frame: int
    apex_frame: int | None
    offset_frame: int
    kind: str
    emotion: str | None
    action_units: tuple[str, ...]
    source: str
    repairs: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.video}"


@dataclass(frozen=True)
class LongExpression:
    """An annotated expression of a long video.

    ``video`` is the :attr:`LongVideo.key`. ``onset``/``apex``/``offset`` are 0-based
    positions in that video's ``frames`` (both ends included); ``*_frame`` are the sheet's
    frame numbers (after the repairs). ``apex`` is ``None`` where the sheet has none (SAMM's
    -1) or its apex is unusable (see ``repairs``). ``kind`` is ``micro`` or ``macro``;
    ``emotion`` ``None`` where the sheet has no emotion column. ``name`` is the expression's
    name (``anger1_1``, ``006_1_2``, ``a_116``) and ``source`` its row (``<file> row N``).
    ``repairs`` says, a sentence each, every value changed from the sheet's.
    """

    video: str
    name: str
    onset: int
    apex: int | None
    offset: int
    onset_frame: int
    apex_frame: int | None
    offset_frame: int
    kind: str
    emotion: str | None
    action_units: tuple[str, ...]
    source: str
    repairs: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)


class LongVideoSet(NamedTuple):
    """What a long-video reader returns."""

    videos: list[LongVideo]
    expressions: list[LongExpression]
    dropped: list[Dropped]

    def by_video(self) -> dict[str, list[LongExpression]]:
        """Expressions per video key; every video is there, those without any too."""
        out: dict[str, list[LongExpression]] = {v.key: [] for v in self.videos}
        for e in self.expressions:
            out[e.video].append(e)
        return out


# --- cells ------------------------------------------------------------------------------


def frame_cell(value: Any, *, what: str, source: str, repairs: list[str],
               missing: tuple[str, ...] = ()) -> int | None:
    """A frame-number cell; ``None`` when empty or one of ``missing`` (SAMM's ``-1``).

    A fraction (SAMM Long Videos has 143, e.g. ``566.4``) is rounded half up,
    ``int(x + 0.5)`` as the baseline does (SAMM_MEGC.py:56-58), and the rounding is
    appended to ``repairs``. Anything else that is not a number raises
    :class:`AnnotationError` naming the row.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise AnnotationError(f"{source}: {what} is {value!r}, not a frame number; fix the cell")
    text = cell_text(value)
    if text == "" or text in missing:
        return None
    try:
        return cell_int(text, what=what, source=source)
    except AnnotationError:
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise
    n = math.floor(x + 0.5)
    repairs.append(f"{what} {text} rounded half up to {n} (int(x + 0.5), as the MEGC 2020 "
                   "baseline SAMM_MEGC.py:56-58)")
    return n


def kind_of(text: str) -> str | None:
    """``micro-expression``, ``Micro - 1/2`` → ``micro``; ``Macro`` → ``macro``; else ``None``."""
    t = text.strip().lower()
    return next((k for k in KINDS if t.startswith(k)), None)


def check_suffix(path: Path, ok: tuple[str, ...]) -> None:
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} does not exist; pass annotations=<path>")
    if path.suffix.lower() == ".xls":
        raise AnnotationError(
            f"{path} is an old .xls workbook, which mefeat does not read (no xlrd); save it "
            "as .xlsx (Excel or LibreOffice: Save As) and pass that file")
    if path.suffix.lower() not in ok:
        raise AnnotationError(f"{path}: unsupported annotation format {path.suffix!r}; use "
                              f"{' or '.join(ok)}")


# --- reader base ------------------------------------------------------------------------


class VideoFolder(NamedTuple):
    subject: str
    video: str
    path: Path


class LongVideoReader:
    """Base of the long-video readers: checks ``root``/``annotations``, reads once, caches.

    Subclasses set ``name``, ``fps``, ``annotation_names`` (globs relative to ``root``),
    ``frame_pattern`` and implement :meth:`parse` and :meth:`folders`.
    """

    name = ""
    fps = 0.0
    annotation_names: tuple[str, ...] = ()
    frame_pattern: re.Pattern[str] | None = None

    def __init__(self, root: str | os.PathLike, *, annotations: str | os.PathLike | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{self.name} root {self.root} is not a folder; pass the folder drawn in the "
                f"{type(self).__name__} docstring")
        self.annotations = Path(annotations) if annotations is not None else self._find()
        if not self.annotations.is_file():
            raise AnnotationError(
                f"{self.name} annotation file {self.annotations} does not exist; check the path")
        self._result: LongVideoSet | None = None

    def _find(self) -> Path:
        for pattern in self.annotation_names:
            found = sorted(self.root.glob(pattern))
            if len(found) == 1:
                return found[0]
            if found:
                raise AnnotationError(
                    f"several {self.name} annotation files in {self.root}: "
                    f"{[str(p.relative_to(self.root)) for p in found]}; pass "
                    "annotations=<the one to use>")
        raise AnnotationError(
            f"no {self.name} annotation file {' or '.join(self.annotation_names)} in "
            f"{self.root}; put it there or pass annotations=<path>")

    def parse(self) -> tuple[list[LongRow], list[Dropped]]:
        raise NotImplementedError

    def folders(self) -> list[VideoFolder]:
        """Every video folder of the layout (with or without frames)."""
        raise NotImplementedError

    def expected_folder(self, row: LongRow) -> str:
        """Where the frames of ``row``'s video should be, for the messages."""
        raise NotImplementedError

    def match(self, subject: str, video: str) -> tuple[str, str]:
        """How a sheet row finds its folder: by (subject, video), exactly by default."""
        return subject, video

    def read(self) -> LongVideoSet:
        """Read the sheet and the frame folders (once; later calls re-use it)."""
        if self._result is None:
            rows, dropped = self.parse()
            self._result = self._join(rows, dropped)
        return self._result

    def _join(self, rows: list[LongRow], dropped: list[Dropped]) -> LongVideoSet:
        dropped = list(dropped)
        groups: dict[tuple[str, str], list[VideoFolder]] = defaultdict(list)
        for f in self.folders():
            groups[self.match(f.subject, f.video)].append(f)
        videos: dict[tuple[str, str], LongVideo] = {}
        bad: dict[tuple[str, str], str] = {}
        for m, fs in sorted(groups.items()):
            f = fs[0]
            if len(fs) > 1:
                bad[m] = (f"several frame folders are video {f.video}: "
                          f"{sorted(str(g.path) for g in fs)}; keep one")
                dropped += [Dropped(self.name, g.subject, g.video, bad[m], str(g.path)) for g in fs]
                continue
            key = f"{self.name}/{f.subject}/{f.video}"
            try:
                frames = list_frames(f.path, key=key, pattern=self.frame_pattern)
            except SampleError as exc:
                bad[m] = exc.reason
                dropped.append(Dropped(self.name, f.subject, f.video, exc.reason, str(f.path)))
                continue
            videos[m] = LongVideo(self.name, f.subject, f.video, tuple(p for _, p in frames),
                                  tuple(n for n, _ in frames), self.fps, {"folder": str(f.path)})
        positions = {m: {n: i for i, n in enumerate(v.frame_numbers)} for m, v in videos.items()}
        expressions = []
        for row in rows:
            m = self.match(row.subject, row.video)
            if m in bad:
                reason = f"video {row.video} cannot be read: {bad[m]}"
            elif m not in videos:
                reason = (f"no frame folder of video {row.video} ({self.expected_folder(row)}); "
                          "restore the video's frames or fix the sheet")
            else:
                got = _expression(row, videos[m], positions[m])
                if isinstance(got, LongExpression):
                    expressions.append(got)
                    continue
                reason = got
            dropped.append(Dropped(row.dataset, row.subject, row.name, reason, row.source))
        return LongVideoSet(sorted(videos.values(), key=lambda v: v.key), expressions, dropped)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"


def _missing_frame(what: str, n: int, video: LongVideo) -> str:
    nums, folder = video.frame_numbers, video.extra.get("folder", video.key)
    if n < nums[0]:
        where = f"before the first frame file ({nums[0]})"
    elif n > nums[-1]:
        where = f"beyond the last frame ({nums[-1]}, {len(nums)} files)"
    else:
        where = "lost inside the video"
    return (f"{what} frame {n} is not among the frames of {folder}: {where}; fix the "
            "annotation or restore the frames")


def _expression(row: LongRow, video: LongVideo, pos: dict[int, int]) -> LongExpression | str:
    """The row placed in ``video``, or the reason it cannot be."""
    onset, apex, offset = row.onset_frame, row.apex_frame, row.offset_frame
    if onset > offset:
        return f"onset {onset} is after offset {offset}; fix the annotation"
    for what, n in (("onset", onset), ("offset", offset)):
        if n not in pos:
            return _missing_frame(what, n, video)
    repairs = list(row.repairs)
    if apex is not None and not onset <= apex <= offset:
        repairs.append(f"apex {apex} is outside onset..offset {onset}..{offset}: no apex")
        apex = None
    elif apex is not None and apex not in pos:
        repairs.append(f"apex frame {apex} is not among the video's frame files: no apex")
        apex = None
    return LongExpression(
        video=video.key, name=row.name, onset=pos[onset],
        apex=None if apex is None else pos[apex], offset=pos[offset], onset_frame=onset,
        apex_frame=apex, offset_frame=offset, kind=row.kind, emotion=row.emotion,
        action_units=row.action_units, source=row.source, repairs=tuple(repairs),
        extra=dict(row.extra))


def subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder} is not a folder; the frames are expected there "
                                 "(see the reader's docstring)")
    return sorted(p for p in folder.iterdir() if p.is_dir())


def split_rows(parsed: Iterable[LongRow | Dropped]) -> tuple[list[LongRow], list[Dropped]]:
    """A parser's rows, and the rows it left out (with why), in sheet order."""
    rows: list[LongRow] = []
    dropped: list[Dropped] = []
    for got in parsed:
        (rows if isinstance(got, LongRow) else dropped).append(got)  # type: ignore[arg-type]
    return rows, dropped
