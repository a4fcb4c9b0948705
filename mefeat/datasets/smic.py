"""SMIC readers: the original HS clip folders (``smic``) and SMIC-E HS (``smic-e``).

Li, Pfister, Huang, Zhao, Pietikäinen, "A Spontaneous Micro-expression Database:
Inducement, collection and baseline", IEEE FG 2013, doi:10.1109/FG.2013.6553717.
SMIC-E (the extended version with long context and onset/offset annotation) ships
``SMIC-HS-E_annotation.xlsx``; the MEGC 2019 frame list (``data_apex.csv``) shows its
folder naming. Apex rule as in the MEB toolkit (github.com/tvaranka/meb): the middle frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from mefeat.datasets._base import (
    Reader,
    ReadResult,
    Row,
    cell_int,
    cell_text,
    drop,
    join_rows,
)
from mefeat.datasets._sample import Dropped
from mefeat.datasets._tables import read_table
from mefeat.errors import AnnotationError, DatasetLayoutError

EMOTION_CODES = {"ne": "negative", "po": "positive", "sur": "surprise"}
_CLIP = re.compile(r"s0*(\d+)_([a-z]+)_(\d+)", re.IGNORECASE)


def subject_id(value: object, *, source: str = "") -> str:
    """``20``, ``"20"``, ``"s20"`` or ``"s01"`` → ``"s20"`` / ``"s1"`` (the HS folder name)."""
    m = re.fullmatch(r"s?0*(\d{1,9})", cell_text(value), re.IGNORECASE)
    if not m:
        raise AnnotationError(f"{source}: Subject {value!r} is not a SMIC subject number")
    return f"s{int(m.group(1))}"


def clip_emotion(clip: str) -> str | None:
    """The emotion coded in a clip name: ``s1_ne_01`` → "negative"; ``None`` if unknown."""
    m = _CLIP.fullmatch(clip)
    return EMOTION_CODES.get(m.group(2).lower()) if m else None


class Smic(Reader):
    """SMIC HS (original release): 164 clips of 16 subjects (100 fps), no annotation file.

    Expected layout (the emotion comes from the folder; ``non_micro`` folders are
    ignored)::

        root/
        └── HS/
            ├── s1/
            │   └── micro/
            │       ├── negative/
            │       │   ├── s1_ne_01/
            │       │   │   ├── image106399.bmp   (any .bmp/.jpg/.png, numbered)
            │       │   │   └── ...
            │       ├── positive/...
            │       └── surprise/...
            └── s20/...

    Each clip folder holds the micro-expression only, so onset = its first frame and
    offset = its last. SMIC has no apex annotation: the apex is the middle frame,
    ``onset + (offset - onset) // 2`` in frame numbers (the rule of MEB's SMIC loader,
    :func:`~mefeat.datasets._base.missing_apex`), flagged in ``extra["apex_rule"]``; a
    clip whose middle frame number has no file is left out with that reason. Reference:
    Li et al., IEEE FG 2013.
    """

    name = "smic"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        annotations: str | os.PathLike | None = None,
        camera: str = "HS",
    ):
        if annotations is not None:
            raise AnnotationError(
                "the original SMIC release has no annotation file; use the 'smic-e' reader "
                "for SMIC-HS-E_annotation.xlsx"
            )
        super().__init__(root)
        self.camera_dir = self.root / camera
        if not self.camera_dir.is_dir():
            raise DatasetLayoutError(
                f"SMIC folder {self.camera_dir} does not exist; root must hold {camera}/"
                "<subject>/micro/<emotion>/<clip>/"
            )

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        rows: list[Row] = []
        # Only s<number> folders are subjects; anything else beside them is not SMIC data.
        subjects = [
            p for p in self.camera_dir.iterdir() if p.is_dir() and re.fullmatch(r"s\d+", p.name)
        ]
        for subj in sorted(subjects, key=lambda p: int(p.name[1:])):
            micro = subj / "micro"
            if not micro.is_dir():
                continue
            subject = subject_id(subj.name, source=str(subj))
            for emo_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
                for clip_dir in sorted(p for p in emo_dir.iterdir() if p.is_dir()):
                    extra = {}
                    coded = clip_emotion(clip_dir.name)
                    if coded is not None and coded != emo_dir.name.lower():
                        extra["emotion_conflict"] = f"clip name says {coded}"
                    rows.append(
                        Row(
                            dataset=self.name,
                            subject=subject,
                            clip=clip_dir.name,
                            onset=None,
                            apex=None,
                            offset=None,
                            emotion=emo_dir.name.lower(),
                            folder=tuple(clip_dir.relative_to(self.root).parts),
                            source=str(clip_dir.relative_to(self.root)),
                            extra=extra,
                        )
                    )
        return rows, []


COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("OnsetF",),
    "offset": ("OffsetF",),
    "emotion": ("Emotion",),
}
OPTIONAL = {
    "onset2": ("Onset2F",),
    "offset2": ("Offset2F",),
    "first": ("FirstF",),
    "last": ("LastF",),
}


def parse_annotations(path: str | os.PathLike, *, sheet: str = "HS") -> list[Row]:
    """Rows of ``SMIC-HS-E_annotation.xlsx`` (sheet ``HS``; ``VIS``/``NIR`` likewise).

    The sheet has onset and offset but no apex (``OnsetF``, ``OffsetF``); the apex is set
    by the reader (middle frame). Quirks: Subject is a bare number (20) while the frame
    folder is zero padded (``s20``, ``s01``) and the clip names are not (``s1_ne_01``);
    a few rows carry a second (and third) onset/offset interval — the clip is the first
    interval, as in MEGC 2019, and the second goes to ``extra["second_interval"]`` (the
    third-interval cells hold spreadsheet garbage and are ignored); one row's Emotion
    disagrees with its clip name (s18_sur_03 is "negative"): the cell is kept and the
    disagreement noted in ``extra["emotion_conflict"]``. Trailing blank rows are skipped.
    """
    rows = []
    for t in read_table(Path(path), COLUMNS, optional=OPTIONAL, sheet=sheet):
        src = t.source
        subject = subject_id(t["subject"], source=src)
        clip = cell_text(t["filename"])
        emotion = cell_text(t["emotion"]).lower()
        extra: dict = {}
        for k, col in (("first", "FirstF"), ("last", "LastF")):
            v = cell_int(t[k], what=col, source=src)
            if v is not None:
                extra[f"{k}_frame"] = v
        on2 = cell_int(t["onset2"], what="Onset2F", source=src)
        off2 = cell_int(t["offset2"], what="Offset2F", source=src)
        if on2 is not None and off2 is not None:
            extra["second_interval"] = (on2, off2)
        coded = clip_emotion(clip)
        if coded is not None and coded != emotion:
            extra["emotion_conflict"] = f"clip name says {coded}, sheet says {emotion}"
        rows.append(
            Row(
                dataset="smic-e",
                subject=subject,
                clip=clip,
                onset=cell_int(t["onset"], what="OnsetF", source=src),
                apex=None,
                offset=cell_int(t["offset"], what="OffsetF", source=src),
                emotion=emotion,
                folder=(),  # set by the reader, which knows the frames folder
                source=src,
                extra=extra,
            )
        )
    return rows


class SmicE(Reader):
    """SMIC-E HS: 157 micro-expressions of 16 subjects in long context clips (100 fps).

    Expected layout (as in the MEGC 2019 frame list)::

        root/                               (the HS_long folder)
        ├── SMIC-HS-E_annotation.xlsx       (or annotations=...)
        └── SMIC_HS_E/                      (frames_dir=...)
            ├── s01/
            │   ├── s1_ne_01/
            │   │   ├── image559700.jpg
            │   │   └── ...
            │   └── ...
            └── s20/...

    Subject folders are zero padded (``s01``) but clip names are not (``s1_ne_01``);
    subject ids are ``s1``..``s20`` like the ``smic`` reader. The context folder runs from
    FirstF to LastF; the sample keeps only OnsetF..OffsetF. The sheet has no apex: it is
    the middle frame (``extra["apex_rule"]``). Seven SMIC-HS clips (s1_ne_02, s2_sur_05,
    s3_ne_03, s3_ne_20, s4_ne_05, s4_ne_06, s9_sur_02) are not in SMIC-E. Reference:
    Li et al., IEEE FG 2013.
    """

    name = "smic-e"
    annotation_names = ("SMIC-HS-E_annotation.xlsx", "SMIC-*-E_annotation.xlsx")

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        annotations: str | os.PathLike | None = None,
        frames_dir: str = "SMIC_HS_E",
        sheet: str = "HS",
    ):
        super().__init__(root, annotations=annotations)
        self.frames_dir = frames_dir
        self.sheet = sheet
        if not (self.root / frames_dir).is_dir():
            raise DatasetLayoutError(
                f"SMIC-E frames folder {self.root / frames_dir} does not exist; pass "
                "frames_dir=<the folder that holds s01/, s02/, ...>"
            )

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        rows, dropped = [], []
        for r in parse_annotations(self.annotations, sheet=self.sheet):
            if r.onset is None or r.offset is None:
                dropped.append(drop(r, "OnsetF or OffsetF is empty in the annotation"))
                continue
            folder = (self.frames_dir, f"s{int(r.subject[1:]):02d}", r.clip)
            rows.append(replace(r, folder=folder, extra=dict(r.extra)))
        return rows, dropped

    def _join(self, rows: list[Row]) -> ReadResult:
        return join_rows(rows, self.root, trim=True)
