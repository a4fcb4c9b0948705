"""CAS(ME)^3 part A reader (micro-expressions, colour frames).

Li, Dong, Lu, Wang, Yan, Ma, Liu, Huang, Fu, "CAS(ME)^3: A Third Generation Facial
Spontaneous Micro-Expression Database with Depth Information and High Ecological
Validity", IEEE TPAMI 45(3):2782-2800, 2023, doi:10.1109/TPAMI.2022.3174895.
No copy of the label sheet was available while writing this reader: its columns follow
the MEB toolkit's ``Casme3A`` loader (github.com/tvaranka/meb) and public loaders of
``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (sheet "label": Subject, Filename, Onset,
Apex, Offset, AU, Objective class, emotion).
"""

from __future__ import annotations

import os
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
    middle,
    parse_action_units,
    read_table,
)
from mefeat.datasets._sample import Dropped
from mefeat.errors import AnnotationError

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


def parse_annotations(path: str | os.PathLike) -> list[Row]:
    """Rows of the part A ME label sheet ("label" if present, else the first sheet).

    Filenames repeat: a Filename names one long recording task (``a``, ``b``...) of a
    subject, and several micro-expressions are cut from it. The clip id is therefore
    ``<Filename>_<Onset>`` (e.g. ``a_116``, as the official ME clip folders
    ``spNO.10_a_116`` are named); two rows with the same subject, Filename and Onset are
    reported by the reader as duplicates. A missing apex becomes the middle of
    onset..offset (``extra["apex_rule"]``).
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
        apex = cell_int(t["apex"], what="Apex", source=src, missing=("/", "-"))
        extra: dict = {"task": task}
        if apex is None and onset is not None and offset is not None:
            apex = middle(onset, offset)
            extra["apex_rule"] = f"middle of onset..offset (Apex is {t['apex']!r})"
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


class Casme3A(Reader):
    """CAS(ME)^3 part A: about 860 micro-expressions of 100 subjects (30 fps, colour).

    Expected layout (the released part A frames)::

        root/
        ├── cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   (or annotations=...)
        ├── spNO.1/
        │   ├── a/
        │   │   ├── color/
        │   │   │   ├── 0.jpg
        │   │   │   ├── 1.jpg
        │   │   │   └── ...
        │   │   └── depth/...
        │   └── b/...
        └── spNO.216/...

    A task folder is a whole recording; each sample keeps the frames Onset..Offset only.
    The sheet writes ``spNO.1`` but some releases name the folders ``spNo.1``: when the
    exact subject folder is missing, the one folder of ``root`` that matches it without
    case is used (and noted in ``extra["subject_dir"]``). Reference: Li et al., IEEE
    TPAMI 45(3), 2023.
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
        return join_rows(rows, self.root, trim=True)
