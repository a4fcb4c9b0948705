"""SAMM reader.

Davison, Lansley, Costen, Tan, Yap, "SAMM: A Spontaneous Micro-Facial Movement Dataset",
IEEE Trans. Affective Computing 9(1):116-129, 2018, doi:10.1109/TAFFC.2016.2573832;
emotion/objective classes: Davison, Merghani, Yap, arXiv:1708.07549. Sheet layout
cross-checked with the MEB toolkit (github.com/tvaranka/meb).
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
from mefeat.datasets._tables import read_table, refuse_other_dataset
from mefeat.errors import AnnotationError

DATASET = "samm"
SHEET = "MICRO_ONLY"
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("Onset Frame",),
    "apex": ("Apex Frame",),
    "offset": ("Offset Frame",),
    "aus": ("Action Units",),
    "emotion": ("Estimated Emotion",),
}
OPTIONAL = {
    "inducement": ("Inducement Code",),
    "duration": ("Duration",),
    "objective": ("Objective Classes",),
    "notes": ("Notes",),
}


def subject_id(value: object, *, source: str = "") -> str:
    """``"006"`` or ``6`` → ``"006"`` (the frame folder's name)."""
    text = cell_text(value)
    if not (text.isdecimal() and len(text) <= 9):  # isdigit() would pass "²", int() not
        raise AnnotationError(f"{source}: Subject {value!r} is not a SAMM subject number")
    return f"{int(text):03d}"


def parse_annotations(path: str | os.PathLike, *, sheet: str = SHEET) -> list[Row]:
    """Rows of ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet MICRO_ONLY, in file order.

    Quirks handled: 13 rows of notes above the header (the header is found as the row
    whose first cell is "Subject", row 14 in v2); Subject is zero-padded text ("006");
    Action Units mix spaces, "or" and "/" alternatives ("(R6 or R12) + R15", "A/L12") —
    tokens are kept as written and the raw cell is in ``extra["au_raw"]``; the emotion
    "Other" is read as "others" like the other datasets. Objective class, inducement code
    and notes go to ``extra``. Another dataset's workbook (CASME II, SMIC-E) is refused
    naming the ``--dataset`` it is for. An Apex Frame of -1 or "/" (no apex) is left
    ``None`` for the reader's missing-apex rule (the middle frame, ``extra["apex_rule"]``).
    """
    refuse_other_dataset(Path(path), DATASET, "SAMM", COLUMNS)
    rows = []
    for t in read_table(
        Path(path), COLUMNS, optional=OPTIONAL, sheet=sheet, header_first_cell="Subject"
    ):
        src = t.source
        subject = subject_id(t["subject"], source=src)
        clip = cell_text(t["filename"])
        emotion = cell_text(t["emotion"]).lower()
        if emotion == "other":
            emotion = "others"
        extra = {"au_raw": cell_text(t["aus"])}
        for k in ("inducement", "objective", "notes"):
            if t[k] is not None:
                extra[k] = t[k]
        rows.append(
            Row(
                dataset=DATASET,
                subject=subject,
                clip=clip,
                onset=cell_int(t["onset"], what="Onset Frame", source=src),
                apex=cell_apex(t["apex"], what="Apex Frame", source=src, missing=("-1", "/"),
                               extra=extra),
                offset=cell_int(t["offset"], what="Offset Frame", source=src),
                emotion=emotion,
                action_units=parse_action_units(t["aus"]),
                folder=(subject, clip),
                source=src,
                extra=extra,
            )
        )
    return rows


class Samm(Reader):
    """SAMM: 159 micro-movements of 32 subjects (200 fps, grayscale).

    Expected layout::

        root/
        ├── SAMM_Micro_FACS_Codes_v2.xlsx   (or annotations=...)
        ├── 006/
        │   ├── 006_1_2/
        │   │   ├── 006_05562.jpg
        │   │   └── ...
        │   └── ...
        └── 037/...

    Image names are ``<subject>_<frame number>.jpg`` but the zero padding differs between
    clips: clips cut from long recordings (inducement 1 and 7, e.g. 006_1_2, 013_1_12,
    035_7_2) pad to 5 digits (``006_05562.jpg``, ``013_00706.jpg``) while the others pad
    to 4 (``006_0180.jpg``), as the MEGC 2019 frame list shows. The reader therefore reads
    the frame number as the last run of digits in the name and sorts by it, never by
    name; two files with the same number in one folder are reported for that clip.
    Reference: Davison et al., IEEE TAFFC 9(1), 2018.
    """

    name = DATASET
    annotation_names = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes*.xlsx")

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        return parse_annotations(self.annotations), []
