"""Machinery shared by the dataset readers: annotation rows, cells, frame listing, samples.

A reader has two halves. ``parse_annotations(path) -> list[Row]`` reads the annotation file
alone (no frames needed, so the real spreadsheets can be tested without the datasets), and
``Reader.read()`` joins each row with its frame folder under ``root`` and turns it into a
:class:`~mefeat.datasets._sample.Sample`. A row whose clip cannot be built (folder missing
or empty, key frame not among the files, onset after apex...) becomes a
:class:`~mefeat.datasets._sample.Dropped` record with the reason; the others go on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mefeat.datasets._sample import Dropped, Sample
from mefeat.errors import AnnotationError, DatasetLayoutError, SampleError
from mefeat.frames import is_utf8, list_frames


class ReadResult(NamedTuple):
    """What a reader returns: the clips it built and every row it left out, with why."""

    samples: list[Sample]
    dropped: list[Dropped]


@dataclass(frozen=True)
class Row:
    """One annotated clip as the annotation file gives it, before frames are looked up.

    Key frames are the dataset's own frame numbers (the numbers in the image file names).
    ``apex`` is ``None`` where the file has no apex ("/", -1, an empty cell, no column):
    :func:`build_sample` then applies :func:`missing_apex`, the one rule for all readers.
    ``extra["apex_cell"]`` may keep the cell's text for the flag.
    ``folder`` is the clip's frame folder relative to the reader's root.
    """

    dataset: str
    subject: str
    clip: str
    onset: int | None
    apex: int | None
    offset: int | None
    emotion: str
    action_units: tuple[str, ...] = ()
    folder: tuple[str, ...] = ()
    source: str = ""
    label: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.clip}"


# --- cells -------------------------------------------------------------------------------


def cell_int(value: Any, *, what: str, source: str, missing: Sequence[str] = ()) -> int | None:
    """An integer cell; ``None`` for an empty cell or one of the ``missing`` markers ("/").

    Any other non-integer raises :class:`AnnotationError` naming the row.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise AnnotationError(f"{source}: {what} is {value!r}, not a frame number; fix the cell")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):  # a marker written as a number (SAMM's -1) is missing too
        return None if str(value) in missing else value
    text = str(value).strip()
    if text in missing or text == "":
        return None
    m = re.fullmatch(r"([+-]?\d{1,18})(\.0+)?", text)
    if m:  # int(), not int(float()): a float would round numbers past 2**53
        return int(m.group(1))
    raise AnnotationError(f"{source}: {what} is {value!r}, not a frame number; fix the cell")


def cell_apex(
    value: Any, *, what: str, source: str, missing: Sequence[str], extra: dict
) -> int | None:
    """An apex cell: its frame number, or ``None`` (empty, or one of the ``missing`` markers).

    A marker's text goes to ``extra["apex_cell"]`` so that the flag of
    :func:`missing_apex` can say what the cell held; the rule itself is not applied here.
    """
    apex = cell_int(value, what=what, source=source, missing=missing)
    if apex is None and value is not None:
        extra["apex_cell"] = cell_text(value)
    return apex


def cell_text(value: Any) -> str:
    """A text cell; numbers come back without a trailing ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def parse_action_units(value: Any) -> tuple[str, ...]:
    """``"4+L10"`` → ``("4", "L10")``; a bare number (``12``) → ``("12",)``.

    Tokens are kept as the file writes them (side prefixes L/R/A/B, intensity letters,
    SAMM's "(R6 or R12)"); blanks around ``+`` are dropped.
    """
    text = cell_text(value)
    if not text:
        return ()
    return tuple(t.strip() for t in text.split("+") if t.strip())


def missing_apex(onset: int, offset: int) -> int:
    """The apex of a clip whose annotation gives none: ``onset + (offset - onset) // 2``.

    The middle frame, rounded down, in the dataset's own frame numbers (MEB's rule for
    SMIC; github.com/tvaranka/meb). It is the one missing-apex rule of every reader:
    SMIC and SMIC-E (no apex column), CASME II's "/" cells, SAMM's -1, empty cells of any
    sheet or manifest. Readers leave ``Row.apex`` as ``None`` and :func:`build_sample`
    calls this, flagging the sample in ``extra["apex_rule"]``. The frame must be a file of
    the clip like any annotated key frame: it is not moved to a neighbour when it is not.
    """
    return onset + (offset - onset) // 2


# --- frames ------------------------------------------------------------------------------


def build_sample(
    row: Row,
    root: Path,
    *,
    pattern: re.Pattern[str] | None = None,
    trim: bool = False,
    adjust: Callable[[Row, list[int]], Row] | None = None,
) -> Sample:
    """Join one row with its frames under ``root``; raise :class:`SampleError` if impossible.

    Missing onset/offset mean the first/last frame of the folder. A missing apex is
    :func:`missing_apex` (the middle frame), flagged in ``extra["apex_rule"]``. ``trim``
    keeps only the frames from onset to offset (long-video folders: SMIC-E, CAS(ME)^3).
    ``adjust(row, numbers)``, given the folder's frame numbers (sorted, before trimming),
    returns the row with a dataset's own key-frame rules applied, or raises
    :class:`SampleError` (CAS(ME)^3's lost frames). Key frames are looked up by frame
    number, never by position, must be files of the folder and onset <= apex <= offset.
    """
    folder = root.joinpath(*row.folder)
    frames = list_frames(folder, key=row.key, pattern=pattern)
    numbers = [n for n, _ in frames]
    if adjust is not None:
        row = adjust(row, numbers)
    extra = dict(row.extra)
    onset = numbers[0] if row.onset is None else row.onset
    offset = numbers[-1] if row.offset is None else row.offset
    if row.onset is None or row.offset is None:
        extra.setdefault("keyframe_rule", "onset/offset = first/last frame of the folder")
    if onset > offset:
        raise SampleError(
            row.key, f"onset {onset} is after offset {offset} ({row.source}); fix the annotation"
        )
    if trim:
        frames = [(n, p) for n, p in frames if onset <= n <= offset]
        numbers = [n for n, _ in frames]
        if not frames:
            raise SampleError(
                row.key, f"no frame of {folder} lies between onset {onset} and offset {offset}"
            )
    apex = row.apex
    if apex is None:
        apex = missing_apex(onset, offset)
        cell = extra.pop("apex_cell", "")
        extra["apex_rule"] = (
            f"no apex in the annotation{f' (cell {cell!r})' if cell else ''}: the middle "
            f"frame onset + (offset - onset) // 2 = {apex}"
        )
    if not onset <= apex <= offset:
        raise SampleError(
            row.key,
            f"apex {apex} is outside onset..offset {onset}..{offset} ({row.source}); "
            "fix the annotation",
        )
    position = {n: i for i, n in enumerate(numbers)}
    keys = [("onset", onset), ("apex", apex), ("offset", offset)]
    if row.apex is None:  # the rule's apex follows from onset and offset: check them first
        keys = [keys[0], keys[2], keys[1]]
    for name, num in keys:
        if num not in position and name == "apex" and row.apex is None:
            raise SampleError(
                row.key,
                f"apex frame {num} (no apex in the annotation: the middle of onset..offset "
                f"{onset}..{offset}) is not among the frames of {folder}; restore the frame "
                "or give the apex in the annotation",
            )
        if num not in position:
            raise SampleError(
                row.key,
                f"{name} frame {num} is not among the frames of {folder} "
                f"({numbers[0]}..{numbers[-1]}, {len(numbers)} files); fix the annotation or "
                "restore the frame",
            )
    if row.source:
        extra.setdefault("source", row.source)
    return Sample(
        dataset=row.dataset,
        subject=row.subject,
        clip=row.clip,
        frames=tuple(p for _, p in frames),
        onset_frame=onset,
        apex_frame=apex,
        offset_frame=offset,
        onset=position[onset],
        apex=position[apex],
        offset=position[offset],
        emotion=row.emotion,
        action_units=row.action_units,
        label=row.label,
        extra=extra,
    )


def drop(row: Row, reason: str) -> Dropped:
    return Dropped(row.dataset, row.subject, row.clip, reason, row.source)


def name_problem(row: Row) -> str | None:
    """Why ``row`` cannot name a clip safely, or ``None``.

    A key part (dataset, subject, clip) becomes a folder of the store and a folder part
    leads to the frames: either one that is empty, ``.``, ``..``, holds a slash or is
    absolute would read frames from outside the dataset root or write outside the store.
    """
    for what, value in (("dataset", row.dataset), ("subject", row.subject), ("clip", row.clip)):
        if not value or value in (".", "..") or "/" in value or "\\" in value:
            return (f"{what} name {value!r} cannot name a clip (empty, '.', '..' or a "
                    "slash); fix the annotation")
        if not value.isprintable() or not is_utf8(value):
            return (f"{what} name {value!r} has control characters or bytes that are not "
                    "UTF-8; rename the folder or fix the annotation")
    for part in row.folder:
        pieces = re.split(r"[\\/]+", str(part))
        if Path(str(part)).is_absolute() or ".." in pieces or re.match(r"[A-Za-z]:", str(part)):
            return (f"frame folder {'/'.join(map(str, row.folder))!r} leaves the dataset root; "
                    "fix the annotation")
    return None


def join_rows(
    rows: Iterable[Row],
    root: Path,
    *,
    pattern: re.Pattern[str] | None = None,
    trim: bool = False,
    check: Callable[[Row, Sample], None] | None = None,
    adjust: Callable[[Row, list[int]], Row] | None = None,
) -> ReadResult:
    """Build a Sample for every row; rows that fail (or repeat a key) go to ``dropped``.

    ``check(row, sample)`` may raise to refuse the whole read (the manifest's path rule);
    ``adjust`` goes to :func:`build_sample`.
    """
    samples: list[Sample] = []
    dropped: list[Dropped] = []
    seen: dict[str, str] = {}
    for row in rows:
        if row.key in seen:
            dropped.append(drop(row, f"duplicate of the clip at {seen[row.key]}; remove one"))
            continue
        seen[row.key] = row.source or row.key
        problem = name_problem(row)
        if problem is not None:
            dropped.append(drop(row, problem))
            continue
        try:
            sample = build_sample(row, root, pattern=pattern, trim=trim, adjust=adjust)
        except SampleError as exc:
            dropped.append(drop(row, exc.reason))
            continue
        if check is not None:
            check(row, sample)
        samples.append(sample)
    return ReadResult(samples, dropped)


# --- reader base class -------------------------------------------------------------------


class Reader:
    """Base of the dataset classes: checks ``root``/``annotations``, reads once, caches.

    Subclasses set ``name`` and ``annotation_names`` (default file names or globs looked
    for in ``root``) and implement :meth:`rows` (annotation rows; may also drop some) and
    optionally :meth:`_join`.
    """

    name: str = ""
    annotation_names: tuple[str, ...] = ()

    def __init__(self, root: str | os.PathLike, *, annotations: str | os.PathLike | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{self.name} root {self.root} is not a folder; pass the folder drawn in "
                f"the {type(self).__name__} docstring"
            )
        self.annotations = self._find_annotations(annotations)
        self._result: ReadResult | None = None

    def _find_annotations(self, annotations: str | os.PathLike | None) -> Path | None:
        if not self.annotation_names and annotations is None:
            return None
        if annotations is not None:
            path = Path(annotations)
            if not path.is_file():
                raise AnnotationError(
                    f"{self.name} annotation file {path} does not exist; check the path"
                )
            return path
        found: list[Path] = []
        for pattern in self.annotation_names:
            found = sorted(self.root.glob(pattern))
            if found:
                break
        if len(found) == 1:
            return found[0]
        names = " or ".join(self.annotation_names)
        if not found:
            raise AnnotationError(
                f"no {self.name} annotation file {names} in {self.root}; put it there or "
                "pass annotations=<path>"
            )
        raise AnnotationError(
            f"several {self.name} annotation files in {self.root}: "
            f"{[p.name for p in found]}; pass annotations=<the one to use>"
        )

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        raise NotImplementedError

    def _join(self, rows: list[Row]) -> ReadResult:
        return join_rows(rows, self.root)

    def read(self) -> ReadResult:
        """Read the annotation file and the frame folders (once; later calls re-use it)."""
        if self._result is None:
            rows, dropped = self.rows()
            result = self._join(rows)
            self._result = ReadResult(result.samples, dropped + result.dropped)
        return self._result

    @property
    def samples(self) -> list[Sample]:
        return self.read().samples

    @property
    def dropped(self) -> list[Dropped]:
        return self.read().dropped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"
