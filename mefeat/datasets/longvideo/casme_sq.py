"""CAS(ME)^2 long videos (part A of CAS(ME)^2, the MEGC spotting set).

Qu, Wang, Yan, Fu, "CAS(ME)^2: A Database for Spontaneous Macro-Expression and
Micro-Expression Spotting and Recognition", IEEE Trans. Affective Computing 9(4):424-436,
2018, doi:10.1109/TAFFC.2017.2654440. The sheet's layout and rules follow the MEGC 2020
spotting baseline (HeyingGithub/Baseline-project-for-MEGC2020_spotting @7d186cf,
``MEdatabase_processed/dataset_new/CASME_2.py``) and SoftNet (genbing99/SoftNet-SpotME,
``load_label.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mefeat.datasets._base import cell_int, cell_text, parse_action_units
from mefeat.datasets._sample import Dropped
from mefeat.datasets.longvideo._common import (
    LongRow,
    LongVideoReader,
    VideoFolder,
    check_suffix,
    frame_cell,
    kind_of,
    subdirs,
)
from mefeat.errors import AnnotationError

DATASET = "casme-sq"
FPS = 30.0
CODE_SHEETS = ("CASFEcode_final", "CASMEcode_final")  # the second spelling is in some copies
RULE1, RULE2 = "naming rule1", "naming rule2"


def _workbook(path: Path) -> dict[str, list[list[Any]]]:
    import openpyxl  # only readers that open a spreadsheet pay for the import

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken or foreign file
        raise AnnotationError(f"cannot open {path} as an .xlsx workbook ({exc}); pass "
                              "CAS(ME)^2code_final.xlsx") from None
    try:
        return {ws.title: [list(r) for r in ws.iter_rows(values_only=True)]
                for ws in wb.worksheets}
    finally:
        wb.close()


def _blank(r: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in r)


def _number(value: Any) -> bool:
    return cell_text(value).isdecimal()


def _video_codes(rows: list[list[Any]], where: str) -> dict[str, str]:
    """``naming rule2``: video name → 4-digit code (``disgust1`` → ``0101``).

    The code keeps its leading zero whether the cell is text ``0101`` or the number 101.
    """
    codes: dict[str, str] = {}
    for i, r in enumerate(rows, 1):
        r = [*r, None, None]
        if _blank(r) or (i == 1 and not _number(r[0])):  # tolerate a header row
            continue
        code, name = cell_text(r[0]), cell_text(r[1])
        if not code.isdecimal() or not name:
            raise AnnotationError(f"{where} row {i}: expected a video code and name, got "
                                  f"{r[0]!r}, {r[1]!r}; fix the sheet")
        code = code.zfill(4)
        if codes.setdefault(name, code) != code:
            raise AnnotationError(f"{where} row {i}: video {name!r} has codes {codes[name]} "
                                  f"and {code}; fix the sheet")
    return codes


def _subject_folders(rows: list[list[Any]], where: str) -> dict[int, str]:
    """``naming rule1``: subject index (column C) → folder (column B, ``s15``).

    Built as a map like SoftNet (``dict(zip(col C, col B))``, load_label.py:20-22) rather
    than row by row like the baseline (CASME_2.py:60), which needs the two sheets aligned.
    """
    folders: dict[int, str] = {}
    for i, r in enumerate(rows, 1):
        r = [*r, None, None, None]
        if _blank(r) or (i == 1 and not _number(r[2])):
            continue
        index = cell_int(r[2], what="subject index (column C)", source=f"{where} row {i}")
        folder = cell_text(r[1]) or (f"s{cell_text(r[0])}" if cell_text(r[0]) else "")
        if index is None or not folder:
            raise AnnotationError(f"{where} row {i}: expected a subject folder (column B) and "
                                  "index (column C); fix the sheet")
        if folders.setdefault(index, folder) != folder:
            raise AnnotationError(f"{where} row {i}: subject index {index} is both "
                                  f"{folders[index]} and {folder}; fix the sheet")
    return folders


def parse_casme_sq(path: str | os.PathLike) -> tuple[list[LongRow], list[Dropped]]:
    """Rows of ``CAS(ME)^2code_final.xlsx`` (no frames needed) and the rows left out.

    Three sheets, no header rows. ``CASFEcode_final`` (or ``CASMEcode_final``; else the
    first sheet, as SoftNet reads it): A subject index, B expression name
    ``<video name>_<n>`` (``anger1_1``), C onset, D apex, E offset, F action units
    (``4+10+14``), G emotion, H type (``macro-expression``/``micro-expression``), I
    self-reported emotion (``extra["self_report"]``). ``naming rule1`` maps the index to
    the subject folder (1 → ``s15``), ``naming rule2`` the video name to its code
    (``disgust1`` → ``0101``, CASME_2.py:47-51, 61-62). A row is video
    ``<subject number>_<code>`` (``15_0101``) of subject ``s15``.

    Repairs, as the baseline makes them and listed in ``repairs``: offset 0 (44 macro
    rows) → offset = apex (CASME_2.py:67-68); apex 0 (one row) → apex = (onset + offset)
    // 2 (CASME_2.py:69-70; the baseline keeps the half frame). Rows whose subject index or
    video name is not in the naming sheets, whose type is unknown, or with no onset or
    offset are left out with the reason.
    """
    path = Path(path)
    check_suffix(path, (".xlsx", ".xlsm"))
    sheets = _workbook(path)
    for title in (RULE1, RULE2):
        if title not in sheets:
            raise AnnotationError(f"{path} has no sheet {title!r} (sheets: {list(sheets)}); "
                                  "pass CAS(ME)^2code_final.xlsx")
    code_title = next((t for t in CODE_SHEETS if t in sheets), next(iter(sheets)))
    codes = _video_codes(sheets[RULE2], f"{path.name} sheet {RULE2!r}")
    subjects = _subject_folders(sheets[RULE1], f"{path.name} sheet {RULE1!r}")
    rows: list[LongRow] = []
    dropped: list[Dropped] = []
    for i, r in enumerate(sheets[code_title], 1):
        r = [*r, *[None] * 9]
        if _blank(r) or (i == 1 and isinstance(r[2], str) and not _number(r[2])):
            continue
        src = f"{path.name} sheet {code_title!r} row {i}"
        index = cell_int(r[0], what="subject index (column A)", source=src)
        subject = subjects.get(index) if index is not None else None
        got = _row(r, src, subject, codes)
        if isinstance(got, str):
            dropped.append(Dropped(DATASET, subject or cell_text(r[0]), cell_text(r[1]), got, src))
        else:
            rows.append(got)
    return rows, dropped


def _row(r: list[Any], src: str, subject: str | None, codes: dict[str, str]) -> LongRow | str:
    """One code-sheet row as a :class:`LongRow`, or why it is left out."""
    name = cell_text(r[1])
    code = codes.get(name.split("_")[0])
    if subject is None:
        return f"subject index {r[0]!r} is not in column C of sheet {RULE1!r}; fix the sheet"
    if code is None:
        return (f"video name {name.split('_')[0]!r} (of {name!r}) is not in sheet {RULE2!r} "
                f"({sorted(codes)}); fix the sheet")
    kind = kind_of(cell_text(r[7]))
    if kind is None:
        return (f"type {cell_text(r[7])!r} (column H) is neither micro-expression nor "
                "macro-expression; fix the sheet")
    repairs: list[str] = []
    onset, apex, offset = (frame_cell(r[c], what=w, source=src, repairs=repairs)
                           for c, w in ((2, "onset"), (3, "apex"), (4, "offset")))
    if offset == 0 and apex:
        repairs.append(f"offset 0 in the sheet: offset = apex = {apex} (as the MEGC 2020 "
                       "baseline, CASME_2.py:67-68)")
        offset = apex
    if apex == 0 and onset is not None and offset:
        apex = (onset + offset) // 2
        repairs.append(f"apex 0 in the sheet: apex = (onset + offset) // 2 = {apex} (as the "
                       "MEGC 2020 baseline, CASME_2.py:69-70)")
    if onset is None or not offset:
        return (f"no onset or offset (onset {r[2]!r}, apex {r[3]!r}, offset {r[4]!r}); fix "
                "the sheet")
    extra = {"video_name": name.split("_")[0], "video_code": code}
    if cell_text(r[8]):
        extra["self_report"] = cell_text(r[8])
    return LongRow(
        dataset=DATASET, subject=subject, video=f"{_number_of(subject)}_{code}", name=name,
        onset_frame=onset, apex_frame=apex, offset_frame=offset, kind=kind,
        emotion=cell_text(r[6]).lower() or None, action_units=parse_action_units(r[5]),
        source=src, repairs=tuple(repairs), extra=extra)


def _number_of(subject: str) -> str:
    return re.sub(r"^[sS]", "", subject)


class CasmeSq(LongVideoReader):
    """CAS(ME)^2 long videos: 87 videos of 22 subjects, 300 macro- and 57 micro-expressions
    (30 fps).

    Expected layout::

        root/
        ├── CAS(ME)^2code_final.xlsx   (or code_final.xlsx, CASME_sq_gt.xlsx, annotations=...)
        └── rawpic/
            ├── s15/
            │   ├── 15_0101disgustingteeth/
            │   │   ├── img1.jpg        (1-based; the padding varies: img001.jpg)
            │   │   ├── img2.jpg
            │   │   └── ...
            │   └── 15_0102eatingworms/...
            └── s40/...

    A video folder is ``<subject number>_<code><anything>``; its code is
    ``folder.split('_')[1][:4]`` (CASME_2.py:89) and the video is ``15_0101`` of subject
    ``s15`` (key ``casme-sq/s15/15_0101``). Folders without ``_`` are not videos. Frames
    are ``img<N>.jpg``, sorted by N as a number (the baseline's ``sort_img_rule``), so
    ``img9`` comes before ``img10``; the sheet's frame numbers are these N. The sheet's
    quirks are in :func:`parse_casme_sq`.
    """

    name = DATASET
    fps = FPS
    annotation_names = ("CAS(ME)^2code_final.xlsx", "code_final.xlsx", "CASME_sq_gt.xlsx")
    frame_pattern = re.compile(r"img(\d+)\.\w+", re.IGNORECASE)

    def parse(self) -> tuple[list[LongRow], list[Dropped]]:
        return parse_casme_sq(self.annotations)

    def folders(self) -> list[VideoFolder]:
        out = []
        for sub in subdirs(self.root / "rawpic"):
            for vid in subdirs(sub):
                if "_" in vid.name:
                    code = vid.name.split("_")[1][:4]
                    out.append(VideoFolder(sub.name, f"{_number_of(sub.name)}_{code}", vid))
        return out

    def expected_folder(self, row: LongRow) -> str:
        code = row.extra["video_code"]
        return f"{self.root / 'rawpic' / row.subject}/{_number_of(row.subject)}_{code}*"
