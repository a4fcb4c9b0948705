"""CAS(ME)^3 part A long videos (the MEGC 2023-2025 spotting set of CAS(ME)^3).

Li, Dong, Lu, Wang, Yan, Ma, Liu, Huang, Fu, "CAS(ME)^3: A Third Generation Facial
Spontaneous Micro-Expression Database with Depth Information and High Ecological
Validity", IEEE TPAMI 45(3):2782-2800, 2023, doi:10.1109/TPAMI.2022.3174895. The sheet is
``part_A/annotation/CAS(ME)3_part_A_v2.xls`` of the release (micro and macro intervals of
the whole recordings), which the MEGC 2024 spotting code reads with pandas.
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
from mefeat.errors import AnnotationError

DATASET = "casme3a-long"
FPS = 30.0
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("Onset",),
    "offset": ("Offset",),
    "type": ("Expression type", "Type"),
}
OPTIONAL = {
    "apex": ("Apex",),
    "aus": ("AU", "Action Units"),
    "objective": ("Objective class",),
    "emotion": ("emotion", "Estimated Emotion"),
}
FRAMES = "part_A/data/part_A"


def parse_casme3a_long(path: str | os.PathLike) -> tuple[list[LongRow], list[Dropped]]:
    """Rows of ``CAS(ME)3_part_A_v2`` saved as ``.xlsx`` or ``.csv`` (no frames needed) and
    the rows left out.

    The release's file is an old ``.xls`` workbook; mefeat reads no ``.xls`` (that needs
    xlrd, which it does not depend on), so save it as ``.xlsx`` first: an ``.xls`` is
    refused saying so. First sheet, header in row 1: Subject (``spNO.1``), Filename (the
    recording, a letter: ``A`` is folder ``a``, so it is lower-cased), Onset, Apex, Offset,
    AU, ``Expression type`` (``Micro-expression``/``Macro-expression``), Objective class.
    Apex, AU, Objective class and an emotion column are optional (no emotion column:
    ``emotion`` is ``None``). An expression is named ``<filename>_<onset>`` (``a_116``).
    """
    path = Path(path)
    check_suffix(path, (".xlsx", ".xlsm", ".csv"))
    return split_rows(_row(t) for t in read_table(path, COLUMNS, optional=OPTIONAL))


def _row(t: TableRow) -> LongRow | Dropped:
    src = t.source
    subject, task = cell_text(t["subject"]), cell_text(t["filename"]).lower()
    repairs: list[str] = []
    onset = frame_cell(t["onset"], what="Onset", source=src, repairs=repairs)
    apex = frame_cell(t["apex"], what="Apex", source=src, repairs=repairs, missing=("/", "-"))
    offset = frame_cell(t["offset"], what="Offset", source=src, repairs=repairs)
    name = f"{task}_{onset}"
    if not subject or not task or "/" in subject + task or task in (".", ".."):
        return Dropped(DATASET, subject, name, f"Subject {subject!r} or Filename {task!r} "
                       "cannot name a recording; fix the sheet", src)
    kind = kind_of(cell_text(t["type"]))
    if kind is None:
        return Dropped(DATASET, subject, name, f"Expression type {cell_text(t['type'])!r} is "
                       "neither Micro-expression nor Macro-expression; fix the sheet", src)
    if onset is None or offset is None:
        return Dropped(DATASET, subject, name, "Onset or Offset is empty; fix the sheet", src)
    extra = {} if t["objective"] is None else {"objective": t["objective"]}
    return LongRow(
        dataset=DATASET, subject=subject, video=task, name=name, onset_frame=onset,
        apex_frame=apex, offset_frame=offset, kind=kind,
        emotion=cell_text(t["emotion"]).lower() or None,
        action_units=parse_action_units(t["aus"]), source=src, repairs=tuple(repairs),
        extra=extra)


class Casme3ALong(LongVideoReader):
    """CAS(ME)^3 part A long videos: the whole recordings of part A (30 fps, colour).

    Expected layout (``frames=`` names another frame folder under ``root``, e.g.
    ``part_A/data/part_A_split/part_A`` in some copies)::

        root/
        └── part_A/
            ├── annotation/
            │   └── CAS(ME)3_part_A_v2.xlsx   (the .xls saved as .xlsx, or annotations=...)
            └── data/
                └── part_A/
                    ├── spNO.1/
                    │   ├── a/
                    │   │   ├── color/
                    │   │   │   ├── 7.jpg    (bare numbers; most recordings lack the
                    │   │   │   ├── 8.jpg     first frames, and a few lose some inside)
                    │   │   │   └── ...
                    │   │   └── depth/...
                    │   └── b/...
                    └── spNO.216/...

    A video is a recording ``spNO.1/a`` (key ``casme3a-long/spNO.1/a``); its frames are
    ``color/<N>.jpg`` sorted by N. The numbers neither start at 1 nor run without gaps, so
    the sheet's frame numbers are looked up among the files and turned into positions; an
    expression whose onset or offset frame is not a file is left out with the reason
    (before the first file, after the last, or lost inside). Sheet subjects and filenames
    find their folders without regard to case (``spNO.1`` / ``spNo.1``, ``A`` / ``a``).
    """

    name = DATASET
    fps = FPS
    annotation_names = ("part_A/annotation/CAS(ME)3_part_A_v2.xlsx",
                        "part_A/annotation/CAS(ME)3_part_A*.xlsx",
                        "part_A/annotation/CAS(ME)3_part_A*.csv")
    frame_pattern = re.compile(r"(\d+)\.\w+")

    def __init__(self, root: str | os.PathLike, *, annotations: str | os.PathLike | None = None,
                 frames: str = FRAMES):
        self.frames_root = Path(root) / frames
        super().__init__(root, annotations=annotations)

    def _find(self) -> Path:
        try:
            return super()._find()
        except AnnotationError:
            old = sorted((self.root / "part_A" / "annotation").glob("*.xls"))
            if old:
                check_suffix(old[0], (".xlsx",))  # says: save the .xls as .xlsx
            raise

    def parse(self) -> tuple[list[LongRow], list[Dropped]]:
        return parse_casme3a_long(self.annotations)

    def folders(self) -> list[VideoFolder]:
        return [VideoFolder(sub.name, task.name, task / "color")
                for sub in subdirs(self.frames_root) for task in subdirs(sub)]

    def match(self, subject: str, video: str) -> tuple[str, str]:
        return subject.lower(), video.lower()

    def expected_folder(self, row: LongRow) -> str:
        return str(self.frames_root / row.subject / row.video / "color")
