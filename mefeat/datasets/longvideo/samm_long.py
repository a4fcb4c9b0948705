"""SAMM Long Videos (the MEGC spotting set of SAMM).

Yap, Kendrick, Davison, Cunningham, Yap, "SAMM Long Videos: A Spontaneous Facial Micro- and
Macro-Expressions Dataset", IEEE FG 2020, doi:10.1109/FG47880.2020.00029. The sheet's
layout and rules follow the MEGC 2020 spotting baseline (HeyingGithub/
Baseline-project-for-MEGC2020_spotting @7d186cf,
``MEdatabase_processed/dataset_new/SAMM_MEGC.py``) and SoftNet (genbing99/SoftNet-SpotME,
``load_label.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mefeat.datasets._base import cell_text, parse_action_units
from mefeat.datasets._sample import Dropped
from mefeat.datasets._tables import TableRow, read_table
from mefeat.datasets.longvideo._common import (
    LongRow,
    LongVideoReader,
    VideoFolder,
    check_suffix,
    frame_cell,
    kind_of,
    split_rows,
    subdirs,
)

DATASET = "samm-long"
FPS = 200.0
SHEET = ("FACS_Movement_Only",)
COLUMNS = {
    "filename": ("Filename",),
    "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"),
    "offset": ("Offset", "Offset Frame"),
    "type": ("Type",),
}
OPTIONAL = {
    "subject": ("Subject",),
    "aus": ("Action Units",),
    "inducement": ("Inducement Code",),
    "duration": ("Duration",),
    "notes": ("Notes",),
}


def parse_samm_long(path: str | os.PathLike) -> tuple[list[LongRow], list[Dropped]]:
    """Rows of ``SAMM_LongVideos_V1_Release.xlsx`` (or V2, V3; no frames needed) and the
    rows left out.

    Sheet ``FACS_Movement_Only`` (else the first sheet, as SoftNet reads it). Rows 1-9 are
    notes and row 10 the header (the baseline skips 10 rows, SAMM_MEGC.py:52-53): the
    header is found as the first row whose first cell is ``Subject``, and a file without
    one is refused naming it. Columns: Subject, Filename, Inducement Code, Onset, Apex,
    Offset, Duration, Type, Action Units, Notes. Filename ``006_1_2`` is expression 2 of
    video ``006_1`` of subject ``006`` (its first two ``_`` tokens, SAMM_MEGC.py:55).
    Type ``Micro - 1/2`` is micro and ``Macro`` macro (the baseline's test is the second
    letter, SAMM_MEGC.py:59-60); another type leaves the row out. Apex ``-1`` means no
    apex (``None``). 143 rows have fractional frames (``566.4``): rounded half up,
    ``int(x + 0.5)`` (SAMM_MEGC.py:56-58), and listed in ``repairs``. No emotion column:
    ``emotion`` is ``None``. Inducement code, duration and notes go to ``extra``.
    """
    path = Path(path)
    check_suffix(path, (".xlsx", ".xlsm", ".csv"))
    table = read_table(path, COLUMNS, optional=OPTIONAL, sheet=SHEET,
                       header_first_cell="Subject")
    return split_rows(_row(t) for t in table)


def _row(t: TableRow) -> LongRow | Dropped:
    src, name = t.source, cell_text(t["filename"])
    tokens = name.split("_")
    subject = tokens[0] if tokens[0] else cell_text(t["subject"])
    if len(tokens) < 2 or not all(tokens[:2]):
        return Dropped(DATASET, subject, name, f"Filename {name!r} is not <subject>_<video>_<n> "
                       "(006_1_2); fix the sheet", src)
    kind = kind_of(cell_text(t["type"]))
    if kind is None:
        return Dropped(DATASET, subject, name, f"Type {cell_text(t['type'])!r} is neither Micro "
                       "nor Macro; fix the sheet", src)
    repairs: list[str] = []
    onset = frame_cell(t["onset"], what="Onset", source=src, repairs=repairs)
    apex = frame_cell(t["apex"], what="Apex", source=src, repairs=repairs, missing=("-1",))
    offset = frame_cell(t["offset"], what="Offset", source=src, repairs=repairs)
    if onset is None or offset is None:
        return Dropped(DATASET, subject, name, f"no Onset or Offset (onset {t['onset']!r}, "
                       f"offset {t['offset']!r}); fix the sheet", src)
    extra = {"type": cell_text(t["type"])}
    for k in ("inducement", "duration", "notes"):
        if t[k] is not None:
            extra[k] = t[k]
    return LongRow(
        dataset=DATASET, subject=subject, video=f"{tokens[0]}_{tokens[1]}", name=name,
        onset_frame=onset, apex_frame=apex, offset_frame=offset, kind=kind, emotion=None,
        action_units=parse_action_units(t["aus"]), source=src, repairs=tuple(repairs),
        extra=extra)


class SammLong(LongVideoReader):
    """SAMM Long Videos: 147 videos of 32 subjects, micro- and macro-movements (200 fps).

    Expected layout::

        root/
        ├── SAMM_LongVideos_V1_Release.xlsx   (or _V2_, _V3_, annotations=...)
        └── SAMM_longvideos/
            ├── 006_1/
            │   ├── 006_1_0001.jpg      (the padding may be 4 or 5 digits)
            │   ├── 006_1_0002.jpg
            │   └── ...
            ├── 006_2/...
            └── 037_7/...

    A video folder is ``<subject>_<video>`` (key ``samm-long/006/006_1``); its frame number
    is the last ``_`` token of a file name, sorted as a number (the baseline's
    ``sort_img_rule``); the sheet's frame numbers are these numbers. Folders without ``_``
    are not videos. The sheet's quirks are in :func:`parse_samm_long`.
    """

    name = DATASET
    fps = FPS
    annotation_names = ("SAMM_LongVideos_V*_Release.xlsx", "SAMM_LongVideos*.xlsx")
    frame_pattern = re.compile(r".*_(\d+)\.\w+")

    def parse(self) -> tuple[list[LongRow], list[Dropped]]:
        return parse_samm_long(self.annotations)

    def folders(self) -> list[VideoFolder]:
        return [VideoFolder(p.name.split("_")[0], p.name, p)
                for p in subdirs(self.root / "SAMM_longvideos") if "_" in p.name]

    def expected_folder(self, row: LongRow) -> str:
        return str(self.root / "SAMM_longvideos" / row.video)
