"""CASME II reader.

Yan, Li, Wang, Zhao, Liu, Chen, Fu, "CASME II: An Improved Spontaneous Micro-Expression
Database and the Baseline Evaluation", PLOS ONE 9(1): e86041, 2014,
doi:10.1371/journal.pone.0086041. Column names and known quirks cross-checked with the
MEB toolkit (github.com/tvaranka/meb, ``meb/datasets/datasets.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mefeat.datasets._base import (
    Reader,
    ReadResult,
    Row,
    cell_apex,
    cell_int,
    cell_text,
    join_rows,
    parse_action_units,
)
from mefeat.datasets._sample import Dropped
from mefeat.datasets._tables import read_table, refuse_other_dataset
from mefeat.errors import AnnotationError, DatasetLayoutError

DATASET = "casme2"
FRAME_PATTERNS = {
    "raw": re.compile(r"img(\d+)\.jpg", re.IGNORECASE),
    "cropped": re.compile(r"reg_img(\d+)\.jpg", re.IGNORECASE),
}
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("OnsetFrame", "Onset Frame"),
    "apex": ("ApexFrame", "Apex Frame"),
    "offset": ("OffsetFrame", "Offset Frame"),
    "aus": ("Action Units", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
}


def subject_id(value: object, *, source: str = "") -> str:
    """``"01"``, ``1`` or ``"sub01"`` → ``"sub01"`` (the frame folder's name)."""
    text = cell_text(value)
    m = re.fullmatch(r"(?:sub)?0*(\d{1,9})", text, re.IGNORECASE)
    if not m:
        raise AnnotationError(
            f"{source}: Subject {value!r} is not a CASME II subject number; fix the cell"
        )
    return f"sub{int(m.group(1)):02d}"


def parse_annotations(path: str | os.PathLike) -> list[Row]:
    """Rows of ``CASME2-coding-*.xlsx`` (first sheet), in file order.

    Quirks handled: Subject is text ("01") or a number; the sheet has blank columns; the
    Action Units cell is a number (``12``) or text (``"4+L10"``); ApexFrame is "/" where
    the coders gave no apex (sub04/EP12_01f in the 2014-05-08 sheet): the row's apex is
    then ``None`` and the reader applies the missing-apex rule
    (:func:`~mefeat.datasets._base.missing_apex`, the middle frame, ``extra["apex_rule"]``).
    Another dataset's workbook (SAMM, SMIC-E) is refused naming the ``--dataset`` it is for:
    SAMM's "Onset Frame" etc. would otherwise pass the blank-insensitive column check.
    """
    refuse_other_dataset(Path(path), DATASET, "CASME II", COLUMNS)
    rows = []
    for t in read_table(Path(path), COLUMNS):
        src = t.source
        subject = subject_id(t["subject"], source=src)
        clip = cell_text(t["filename"])
        if not clip:
            raise AnnotationError(f"{src}: Filename is empty; fix the sheet")
        onset = cell_int(t["onset"], what="OnsetFrame", source=src)
        offset = cell_int(t["offset"], what="OffsetFrame", source=src)
        extra: dict = {}
        apex = cell_apex(t["apex"], what="ApexFrame", source=src, missing=("/", "-"),
                         extra=extra)
        rows.append(
            Row(
                dataset=DATASET,
                subject=subject,
                clip=clip,
                onset=onset,
                apex=apex,
                offset=offset,
                emotion=cell_text(t["emotion"]).lower(),
                action_units=parse_action_units(t["aus"]),
                folder=(subject, clip),
                source=src,
                extra=extra,
            )
        )
    return rows


class Casme2(Reader):
    """CASME II: 255 clips of 26 subjects (200 fps).

    Expected layout (``frames="raw"``: CASME2_RAW_selected; ``"cropped"``: Cropped)::

        root/
        ├── CASME2-coding-20140508.xlsx    (any CASME2-coding-*.xlsx, or annotations=...)
        ├── sub01/
        │   ├── EP02_01f/
        │   │   ├── img46.jpg              (raw)  or  reg_img46.jpg  (cropped)
        │   │   ├── img47.jpg
        │   │   └── ...
        │   └── ...
        └── sub26/...

    Frame numbers come from the file names; the clip's frames are every matching image of
    its folder, sorted by number. Reference: Yan et al., PLOS ONE 9(1): e86041, 2014.
    """

    name = DATASET
    annotation_names = ("CASME2-coding-*.xlsx",)

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        annotations: str | os.PathLike | None = None,
        frames: str = "raw",
    ):
        if frames not in FRAME_PATTERNS:
            raise DatasetLayoutError(
                f"CASME II frames must be one of {sorted(FRAME_PATTERNS)}, not {frames!r}"
            )
        self.frames = frames
        super().__init__(root, annotations=annotations)

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        return parse_annotations(self.annotations), []

    def _join(self, rows: list[Row]) -> ReadResult:
        return join_rows(rows, self.root, pattern=FRAME_PATTERNS[self.frames])
