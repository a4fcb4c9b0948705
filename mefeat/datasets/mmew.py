"""MMEW reader (micro-expression part).

Ben, Ren, Zhang, Wang, Kpalma, Meng, Liu, "Video-Based Facial Micro-Expression Analysis:
A Survey of Datasets, Features and Algorithms", IEEE TPAMI 44(9):5826-5846, 2022,
doi:10.1109/TPAMI.2021.3067464. No copy of ``MMEW_Micro_Exp.xlsx`` was available while
writing this reader: the columns and folder layout follow the MEB toolkit's MMEW loader
(github.com/tvaranka/meb, ``meb/datasets/datasets.py``): Subject, Filename, OnsetFrame,
ApexFrame, OffsetFrame, Action Units, Estimated Emotion, remarks; frames
``Micro_Expression/<emotion>/<Filename>/<N>.jpg``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mefeat.datasets._base import (
    Reader,
    Row,
    cell_apex,
    cell_int,
    cell_text,
    parse_action_units,
)
from mefeat.datasets._sample import Dropped
from mefeat.datasets._tables import read_table
from mefeat.errors import AnnotationError

DATASET = "mmew"
FRAMES_DIR = "Micro_Expression"
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
OPTIONAL = {"aus": ("Action Units", "AU"), "remarks": ("remarks", "Remark", "Notes")}


def parse_annotations(path: str | os.PathLike) -> list[Row]:
    """Rows of ``MMEW_Micro_Exp.xlsx`` (first sheet), in file order.

    Key frames are the numbers of the clip's image files (``1.jpg``, ``2.jpg``...). A
    missing apex ("/", "-" or empty) is left ``None`` for the reader's missing-apex rule
    (:func:`~mefeat.datasets._base.missing_apex`, the middle frame, ``extra["apex_rule"]``).
    MEB corrects the apex and offset of 16 rows by hand from optical flow; here such rows
    are not patched: if their key frames are out of order or outside the clip, the reader
    drops them with that reason.
    """
    rows = []
    for t in read_table(Path(path), COLUMNS, optional=OPTIONAL):
        src = t.source
        subject = cell_text(t["subject"])
        clip = cell_text(t["filename"])
        emotion_cell = cell_text(t["emotion"])
        if not subject or not clip or not emotion_cell:
            raise AnnotationError(f"{src}: Subject, Filename or Estimated Emotion is empty")
        onset = cell_int(t["onset"], what="OnsetFrame", source=src)
        offset = cell_int(t["offset"], what="OffsetFrame", source=src)
        extra: dict = {}
        apex = cell_apex(t["apex"], what="ApexFrame", source=src, missing=("/", "-"),
                         extra=extra)
        if t["remarks"] is not None:
            extra["remarks"] = t["remarks"]
        rows.append(
            Row(
                dataset=DATASET,
                subject=subject,
                clip=clip,
                onset=onset,
                apex=apex,
                offset=offset,
                emotion=emotion_cell.lower(),
                action_units=parse_action_units(t["aus"]),
                # The emotion folder is spelled as in the sheet's cell.
                folder=(FRAMES_DIR, emotion_cell, clip),
                source=src,
                extra=extra,
            )
        )
    return rows


class Mmew(Reader):
    """MMEW micro-expressions: 300 clips of 36 subjects (90 fps).

    Expected layout::

        root/
        ├── MMEW_Micro_Exp.xlsx             (or annotations=...)
        └── Micro_Expression/
            ├── anger/
            ├── disgust/
            │   ├── <Filename>/
            │   │   ├── 1.jpg
            │   │   ├── 2.jpg
            │   │   └── ...
            │   └── ...
            ├── fear/ happiness/ others/ sadness/ surprise/

    Emotion folders are named as the sheet's Estimated Emotion cells. Reference: Ben et
    al., IEEE TPAMI 44(9), 2022.
    """

    name = DATASET
    annotation_names = ("MMEW_Micro_Exp.xlsx", "MMEW_Micro_Exp*.xlsx")

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        return parse_annotations(self.annotations), []
