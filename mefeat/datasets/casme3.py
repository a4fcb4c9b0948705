"""CAS(ME)^3 part A reader (micro-expressions, colour frames).

Li, Dong, Lu, Wang, Yan, Ma, Liu, Huang, Fu, "CAS(ME)^3: A Third Generation Facial
Spontaneous Micro-Expression Database with Depth Information and High Ecological
Validity", IEEE TPAMI 45(3):2782-2800, 2023, doi:10.1109/TPAMI.2022.3174895.
The columns follow ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` as published in the
authors' repository (github.com/jingtingEmmaLi/CAS-ME-3, ``annotation/partA/``; sheet
"label": Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion; 860 rows,
frame numbers stored as text) and the MEB toolkit's ``Casme3`` loader
(github.com/tvaranka/meb). The part A quirks and their rules are in :class:`Casme3A`; the
authors' answers about them are in that repository's issues #3 and #4.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import replace
from pathlib import Path

from mefeat.datasets._base import (
    Reader,
    ReadResult,
    Row,
    cell_apex,
    cell_int,
    cell_text,
    drop,
    join_rows,
    parse_action_units,
)
from mefeat.datasets._sample import Dropped
from mefeat.datasets._tables import read_table
from mefeat.errors import AnnotationError, SampleError

DATASET = "casme3a"
COLUMNS = {
    "subject": ("Subject", "sub"),
    "filename": ("Filename", "seq"),
    "onset": ("Onset",),
    "apex": ("Apex",),
    "offset": ("Offset",),
    "emotion": ("emotion", "Estimated Emotion"),
}
OPTIONAL = {"aus": ("AU", "Action Units"), "objective": ("Objective class",)}
FPS = 30
# A clip is "very long" when offset - onset >= 60 frames: its offset - onset + 1 frames
# last more than 2 s at 30 fps, the cut the dataset's tracker counts (issue #4: "72
# samples over 2 seconds"; the v2 sheet has 72 such rows). The threshold is mefeat's
# choice; such clips are flagged and kept.
LONG_CLIP_FRAMES = 2 * FPS


def parse_annotations(path: str | os.PathLike) -> list[Row]:
    """Rows of the part A ME label sheet ("label" if present, else the first sheet).

    Filenames repeat: a Filename names one long recording task (``a``, ``b``...) of a
    subject, and several micro-expressions are cut from it. The clip id is therefore
    ``<Filename>_<Onset>`` (e.g. ``a_116``, as the official ME clip folders
    ``spNO.10_a_116`` are named); two rows with the same subject, Filename and Onset are
    reported by the reader as duplicates. A missing apex is left ``None`` for the reader's
    missing-apex rule (the middle frame, ``extra["apex_rule"]``). A row with
    Offset - Onset >= :data:`LONG_CLIP_FRAMES` is flagged in ``extra["long_offset"]``.
    """
    rows = []
    for t in read_table(Path(path), COLUMNS, optional=OPTIONAL, sheet=("label",)):
        src = t.source
        subject = cell_text(t["subject"])
        task = cell_text(t["filename"])
        if not subject or not task:
            raise AnnotationError(f"{src}: Subject or Filename is empty; fix the sheet")
        onset = cell_int(t["onset"], what="Onset", source=src)
        offset = cell_int(t["offset"], what="Offset", source=src)
        extra: dict = {"task": task}
        apex = cell_apex(t["apex"], what="Apex", source=src, missing=("/", "-"), extra=extra)
        if onset is not None and offset is not None and offset - onset >= LONG_CLIP_FRAMES:
            extra["long_offset"] = (
                f"Offset - Onset = {offset - onset} frames ({(offset - onset) / FPS:.1f} s), "
                f"at least {LONG_CLIP_FRAMES} (2 s at {FPS} fps): kept as annotated"
            )
        if t["objective"] is not None:
            extra["objective"] = t["objective"]
        rows.append(
            Row(
                dataset=DATASET,
                subject=subject,
                clip=f"{task}_{onset}",
                onset=onset,
                apex=apex,
                offset=offset,
                emotion=cell_text(t["emotion"]).lower(),
                action_units=parse_action_units(t["aus"]),
                folder=(subject, task, "color"),
                source=src,
                extra=extra,
            )
        )
    return rows


def part_a_rules(row: Row, numbers: list[int]) -> Row:
    """CAS(ME)^3 part A's key-frame rules, given the frame numbers of the task folder.

    1. The onset frame must be a file: a row whose onset frame is gone (before the first
       file: the recording lost its first frames; or lost inside it) raises
       :class:`SampleError`, so the reader reports it as dropped with that reason.
    2. Apex = Onset in the sheet: the apex becomes the first frame file after the onset
       (by number), flagged in ``extra["apex_moved"]``; with no file after the onset up to
       the offset the row raises :class:`SampleError`.
    """
    onset, apex, offset = row.onset, row.apex, row.offset
    if onset is None or offset is None or onset > offset:
        return row  # build_sample says what is wrong with these
    at = bisect_left(numbers, onset)  # numbers are sorted: where the onset file would be
    if at == len(numbers) or numbers[at] != onset:
        if at == 0:
            why = (f"the recording's frame files start at {numbers[0]}: part A lost the "
                   "first frames of most videos")
        elif at == len(numbers):
            why = f"the recording's frame files end at {numbers[-1]}"
        else:
            why = (f"lost inside the recording (files {numbers[at - 1]} and {numbers[at]} "
                   "are there)")
        raise SampleError(
            row.key,
            f"onset frame {onset} is missing ({why}); the sample has no onset frame; "
            "restore the frame if you have it, else it stays out",
        )
    if apex is not None and apex == onset:
        nxt = numbers[at + 1] if at + 1 < len(numbers) else None  # the next file by number
        if nxt is None or nxt > offset:
            raise SampleError(
                row.key,
                f"Apex = Onset = {onset} and no frame file follows it up to Offset {offset}; "
                "a clip without an onset-to-apex motion cannot be used; fix the annotation",
            )
        note = (f"Apex = Onset = {onset} in the label sheet; apex moved to the next frame "
                f"{nxt} (an onset-to-apex flow of zero length is meaningless)")
        row = replace(row, apex=nxt, extra=dict(row.extra, apex_moved=note))
    return row


class Casme3A(Reader):
    """CAS(ME)^3 part A: 860 micro-expressions of 94 subjects in the v2 sheet (30 fps, colour).

    Expected layout (the released part A frames)::

        root/
        ├── cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   (or annotations=...)
        ├── spNO.1/
        │   ├── a/
        │   │   ├── color/
        │   │   │   ├── 7.jpg       (most recordings lack their first 7-8 frames)
        │   │   │   ├── 8.jpg
        │   │   │   └── ...
        │   │   └── depth/...
        │   └── b/...
        └── spNO.216/...

    A task folder is a whole recording; each sample keeps the frames Onset..Offset only.
    The sheet writes ``spNO.1`` but some releases name the folders ``spNo.1``: when the
    exact subject folder is missing, the one folder of ``root`` that matches it without
    case is used (and noted in ``extra["subject_dir"]``).

    Part A quirks (the dataset's tracker, github.com/jingtingEmmaLi/CAS-ME-3 issues #3 and
    #4) and mefeat's rule for each:

    * **Lost frames.** Most recordings lack their first 7-8 frames, and a few frames may
      be missing further on. The sheet's frame numbers are the numbers of the image
      files: they are looked up by number among the files present, never by position
      (with 0.jpg..6.jpg gone, Onset 10 is still ``10.jpg``, index 0 of the clip), and a
      gap inside onset..offset just leaves that frame out. A sample whose **onset frame
      is gone** is *dropped*, with the reason (the frame, and where the files start):
      the onset is the neutral frame every onset-to-apex flow starts from and the frame
      the face is found on, and any other frame would measure a different motion. An
      apex or offset frame that is gone drops the sample likewise (key frames must be
      files).
    * **Onset = Apex** (55 rows of the v2 sheet; the authors: the first frames were not
      recorded, so the first frame the coders saw already showed the apex). The apex is
      *moved* to the first frame file after the onset (by number), and the sample is
      flagged in ``extra["apex_moved"]``: a flow from onset to apex of zero length is
      meaningless, and moving the apex by one frame keeps the sample where dropping it
      would lose all 55. With no frame after the onset up to the offset, it is dropped.
    * **Very long offsets** (the longest row spans 3455 frames; 72 rows last more than
      2 s). Kept as annotated and flagged in ``extra["long_offset"]`` when
      Offset - Onset >= :data:`LONG_CLIP_FRAMES` (60 frames, 2 s at 30 fps: the cut the
      tracker counts; mefeat's choice of threshold).

    A missing apex is the middle frame like in every reader (``extra["apex_rule"]``).
    MEB corrects a few rows by hand (apex before onset, offset 0); here they are not
    patched: the reader drops them with the reason. Reference: Li et al., IEEE TPAMI
    45(3), 2023.
    """

    name = DATASET
    annotation_names = ("cas(me)3_part_A_ME_label*.xlsx", "*part_A_ME_label*.xlsx")

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        rows, dropped = [], []
        by_lower: dict[str, list[str]] = {}
        for p in self.root.iterdir():
            if p.is_dir():
                by_lower.setdefault(p.name.lower(), []).append(p.name)
        for r in parse_annotations(self.annotations):
            if r.onset is None or r.offset is None:
                dropped.append(drop(r, "Onset or Offset is empty in the label sheet"))
                continue
            if not (self.root / r.subject).is_dir():
                names = by_lower.get(r.subject.lower(), [])
                if len(names) == 1:
                    extra = dict(r.extra, subject_dir=names[0])
                    r = replace(r, folder=(names[0], *r.folder[1:]), extra=extra)
            rows.append(r)
        return rows, dropped

    def _join(self, rows: list[Row]) -> ReadResult:
        return join_rows(rows, self.root, trim=True, adjust=part_a_rules)
