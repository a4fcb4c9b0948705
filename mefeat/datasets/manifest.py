"""Reader for a plain CSV manifest: any dataset laid out as one folder of frames per clip.

The format is mefeat's own: one row per clip with ``subject, clip, frames_dir, onset,
apex, offset, label``. Paths in the file are untrusted input: every frame folder must
stay inside ``root`` (no absolute paths, no ``..`` climbing out, no symlink leading
out), otherwise the whole manifest is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from mefeat.datasets._base import (
    Reader,
    ReadResult,
    Row,
    cell_int,
    cell_text,
    join_rows,
    parse_action_units,
)
from mefeat.datasets._sample import Dropped, Sample
from mefeat.datasets._tables import read_table
from mefeat.errors import AnnotationError, DatasetLayoutError

COLUMNS = {
    "subject": ("subject",),
    "clip": ("clip",),
    "frames_dir": ("frames_dir",),
    "onset": ("onset",),
    "apex": ("apex",),
    "offset": ("offset",),
    "label": ("label",),
}
OPTIONAL = {"dataset": ("dataset",), "action_units": ("action_units", "aus")}
_INT = re.compile(r"[+-]?\d+")


def parse_annotations(path: str | os.PathLike, *, dataset: str = "manifest") -> list[Row]:
    """Rows of a manifest CSV.

    ``onset``/``apex``/``offset`` are frame numbers as in the image file names; empty
    onset/offset mean the first/last frame of the folder and an empty apex the middle
    frame (``extra["apex_rule"]``). ``label`` is the emotion name; an integer label is
    also taken as the class id (``Sample.label``). An optional ``dataset`` column
    overrides ``dataset``; ``action_units`` are written like ``4+L10``.
    """
    rows = []
    for t in read_table(Path(path), COLUMNS, optional=OPTIONAL):
        src = t.source
        subject, clip = cell_text(t["subject"]), cell_text(t["clip"])
        frames_dir = cell_text(t["frames_dir"])
        if not subject or not clip or not frames_dir:
            raise AnnotationError(f"{src}: subject, clip and frames_dir must not be empty")
        for name, value in (("subject", subject), ("clip", clip)):
            if "/" in value or "\\" in value:
                raise AnnotationError(f"{src}: {name} {value!r} must not contain a slash")
        label_text = cell_text(t["label"])
        rows.append(
            Row(
                dataset=cell_text(t["dataset"]) or dataset,
                subject=subject,
                clip=clip,
                onset=cell_int(t["onset"], what="onset", source=src),
                apex=cell_int(t["apex"], what="apex", source=src),
                offset=cell_int(t["offset"], what="offset", source=src),
                emotion=label_text.lower(),
                action_units=parse_action_units(t["action_units"]),
                folder=_relative_parts(frames_dir, source=src),
                source=src,
                label=int(label_text) if _INT.fullmatch(label_text) else None,
            )
        )
    return rows


def _relative_parts(frames_dir: str, *, source: str) -> tuple[str, ...]:
    """Split ``frames_dir`` into path parts, refusing absolute paths and ``..``."""
    for flavour in (PurePosixPath, PureWindowsPath):
        p = flavour(frames_dir)
        if p.is_absolute() or p.drive or p.root:
            raise DatasetLayoutError(
                f"{source}: frames_dir {frames_dir!r} is an absolute path; manifest paths "
                "must be relative to the dataset root"
            )
    parts = tuple(x for x in re.split(r"[\\/]+", frames_dir) if x not in ("", "."))
    if ".." in parts:
        raise DatasetLayoutError(
            f"{source}: frames_dir {frames_dir!r} climbs out with '..'; manifest paths must "
            "stay inside the dataset root"
        )
    return parts


class Manifest(Reader):
    """A CSV manifest of clips under ``root``.

    Expected layout::

        root/
        ├── manifest.csv          (or annotations=...)
        │     subject,clip,frames_dir,onset,apex,offset,label
        │     s01,c01,clips/s01/c01,1,5,9,happiness
        └── clips/
            └── s01/
                └── c01/
                    ├── 0001.png   (any .jpg/.png/.bmp; number = last digits of the name)
                    └── ...

    ``frames_dir`` is relative to ``root``. A path that leaves ``root`` — absolute,
    ``../..``, or through a symlink (folder or frame file) pointing outside — raises
    :class:`~mefeat.errors.DatasetLayoutError` for the whole manifest.
    """

    name = "manifest"
    annotation_names = ("manifest.csv",)

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        annotations: str | os.PathLike | None = None,
        dataset: str = "manifest",
    ):
        super().__init__(root, annotations=annotations)
        self.dataset = dataset

    def rows(self) -> tuple[list[Row], list[Dropped]]:
        rows = parse_annotations(self.annotations, dataset=self.dataset)
        real_root = self.root.resolve()
        for r in rows:
            target = self.root.joinpath(*r.folder).resolve()
            if not target.is_relative_to(real_root):
                raise DatasetLayoutError(
                    f"{r.source}: frames_dir {'/'.join(r.folder)!r} leads to {target}, outside "
                    f"the dataset root {real_root} (a symlink?); refusing the manifest"
                )
        return rows, []

    def _join(self, rows: list[Row]) -> ReadResult:
        return join_rows(rows, self.root, check=self._frames_inside)

    def _frames_inside(self, row: Row, sample: Sample) -> None:
        real_root = self.root.resolve()
        for f in sample.frames:
            if not f.resolve().is_relative_to(real_root):
                raise DatasetLayoutError(
                    f"{row.source}: frame {f} is a link to {f.resolve()}, outside the "
                    f"dataset root {real_root}; refusing the manifest"
                )
