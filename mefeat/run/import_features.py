"""Import the official 28×28 PNG feature folders into a store variant.

The published STSTNet/HTNet and CausalNet code trains on folders of PNGs (names
``<sub>_<clip> .png``, a space before the extension) listed by
``combined_3_class2_for_optical_flow.csv`` (dataset, sub, filename_o, label, ...). Importing
them puts the published inputs behind the same views and trainer as mefeat's own
extractions. Images are stored as OpenCV reads them (BGR), since the official code reads
them with ``cv2.imread``.

The import behaves like ``extract``: a problem with the folder as a whole (no CSV, a
missing column, two rows for one clip) is refused before anything is written; a row with
an unusable cell is left out and reported (the store's ``dropped``); a sample whose PNG is
missing, corrupt or of another size is recorded as failed (the store's error column, shown
by ``mefeat inspect``) while every other sample is imported. Running the same import into
the same store again imports only the samples not yet done, so restoring a file and
re-running finishes the job.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mefeat.datasets._sample import Dropped, Sample
from mefeat.datasets.labels import THREE_CLASSES
from mefeat.errors import AnnotationError, DatasetLayoutError, SampleError
from mefeat.frames import read_color
from mefeat.provenance import file_sha256, versions
from mefeat.run.extract import detail_lines
from mefeat.store import FeatureStore

CSV_NAME = "combined_3_class2_for_optical_flow.csv"
COLUMNS = ("dataset", "sub", "filename_o", "label")
SIZE = 28  # every official image is 28×28; the views' region boxes assume it
# Per format: the image files of one sample (suffixes of "<sub>_<clip>") and array names.
FORMATS: dict[str, dict[str, str]] = {
    "htnet": {"": "image"},
    # CausalNet: onset→apex and apex→offset u_v_os images, then their direction maps.
    "causalnet": {"": "image", "_1": "image_ao", "_2": "dir_oa", "_3": "dir_ao"},
}
_AGAIN = "then run the same import again (it imports only what is missing)"


@dataclass
class ImportSummary:
    """What one ``import-features`` run did."""

    store: str
    variant: str
    done: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def imported(self) -> int:
        """Samples of the variant that are done now (this run and earlier ones)."""
        return len(self.done) + len(self.resumed)

    def lines(self) -> list[str]:
        out = [
            f"store {self.store}: variant {self.variant}",
            f"imported {len(self.done)}, already imported {len(self.resumed)}, "
            f"failed {len(self.failed)}, rows left out {len(self.dropped)}",
        ]
        return out + detail_lines(self.failed, self.dropped)


def import_features(
    folder: str | os.PathLike, *, fmt: str, store: str | os.PathLike,
    points: str | os.PathLike | None = None,
) -> ImportSummary:
    """Read an official feature folder into ``store`` (variant ``official-<fmt>``).

    Args:
        folder: the folder with the PNGs and ``combined_3_class2_for_optical_flow.csv``.
        fmt: ``htnet`` (one u_v_os image a sample; STSTNet's input too) or ``causalnet``.
        points: optional CSV of HTNet's 28-px region points per image (name, leye_x, leye_y,
            reye_x, reye_y, nose_x, nose_y, lmouth_x, lmouth_y, rmouth_x, rmouth_y); without
            it the HTNet view uses the official fallback points for every sample.
    Returns:
        what was imported, resumed, failed (with why) and left out.
    Raises:
        DatasetLayoutError, AnnotationError: the folder or its CSV cannot be imported at
            all; nothing is written then.
    """
    folder = Path(folder)
    if fmt not in FORMATS:
        raise DatasetLayoutError(f"unknown feature format {fmt!r}; choose one of {sorted(FORMATS)}")
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: no such folder; give the official feature folder")
    table = folder / CSV_NAME
    if not table.is_file():
        raise DatasetLayoutError(f"{folder}: no {CSV_NAME}; is this an official feature folder?")
    samples, lines, dropped = _read_table(table)
    point_rows = _read_points(Path(points)) if points is not None else None
    variant = f"official-{fmt}"
    # The CSV's hash: a changed label must not resume into a store made from the old one.
    config = {"imported_from": f"official {fmt} features", "csv_sha256": file_sha256(table)}
    settings = {"format": variant, "points_sha256": file_sha256(points)}
    shapes = {name: ((3, SIZE, SIZE), "uint8") for name in FORMATS[fmt].values()}
    if point_rows is not None:
        shapes["points"] = ((4, 2), "float32")
    summary = ImportSummary(store=str(store), variant=variant, dropped=dropped)
    with FeatureStore.create_or_resume(store, samples, config, provenance=versions()) as fs:
        fs.group.attrs["classes"] = list(THREE_CLASSES)
        fs.group.attrs["dropped"] = [vars(d) for d in dropped]
        var = fs.require_imported(variant, shapes, settings, source=str(folder))
        done, status = var.done(), fs.column("status")
        rows: dict[str, list[np.ndarray]] = {name: [] for name in shapes}
        written, failed = [], []
        for i, s in enumerate(samples):
            if done[i]:
                if status[i] != "done":  # killed after its done flag, before its status
                    fs.set_status(i, "done")
                summary.resumed.append(s.key)
                continue
            try:
                arrays = _read_sample(folder, fmt, s, where=f"{table.name} row {lines[i]}")
                if point_rows is not None:
                    arrays["points"] = _points_of(point_rows, s, Path(points))
            except SampleError as exc:
                failed.append(i)
                summary.failed[s.key] = exc.reason
                continue
            for name, value in arrays.items():
                rows[name].append(value)
            written.append(i)
            summary.done.append(s.key)
        # Arrays first, done flags next, status last: a run killed in between leaves
        # samples that are simply imported again.
        var.write_rows(written, {name: np.stack(v) for name, v in rows.items() if v})
        fs.set_statuses(written, "done")
        fs.set_statuses(failed, "failed", [summary.failed[samples[i].key] for i in failed])
    return summary


def _read_table(table: Path) -> tuple[list[Sample], list[int], list[Dropped]]:
    """The CSV's samples with their line numbers, and the rows left out with why."""
    try:
        with table.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise AnnotationError(
                    f"{table}: column(s) {', '.join(map(repr, missing))} missing (header: "
                    f"{', '.join(header) or 'none'}); the official CSV has the columns "
                    f"{', '.join(COLUMNS)}: restore it from the official release"
                )
            records = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{table}: not a readable CSV ({exc}); restore the official "
                              "file") from None
    samples, lines, dropped, seen = [], [], [], {}
    for line, row in records:
        cells = {c: (row.get(c) or "").strip() for c in COLUMNS}
        where = f"{table.name} row {line}"

        def drop(reason: str, cells=cells, where=where) -> None:
            dropped.append(Dropped(cells["dataset"], cells["sub"], cells["filename_o"],
                                   reason, where))

        empty = [c for c in COLUMNS if not cells[c]]
        if empty:
            drop(f"empty cell(s) {', '.join(empty)}; fill them in or delete the row")
            continue
        try:
            label = int(cells["label"])
        except ValueError:
            label = -1
        if not 0 <= label < len(THREE_CLASSES):
            drop(f"label {cells['label']!r} is not a class of the 3-class scheme (0..2 = "
                 f"{', '.join(THREE_CLASSES)}); correct the label")
            continue
        s = Sample(dataset=cells["dataset"], subject=cells["sub"], clip=cells["filename_o"],
                   frames=(), onset_frame=-1, apex_frame=-1, offset_frame=-1, onset=-1,
                   apex=-1, offset=-1, emotion=THREE_CLASSES[label], label=label)
        if s.key in seen:
            raise AnnotationError(
                f"{table}: rows {seen[s.key]} and {line} are both {s.key}; which images belong "
                "to which row is ambiguous: delete one of the rows"
            )
        seen[s.key] = line
        samples.append(s)
        lines.append(line)
    if not samples:
        raise AnnotationError(f"{table}: no usable rows ({len(dropped)} left out: "
                              f"{'; '.join(map(str, dropped[:3])) or 'the file is empty'})")
    return samples, lines, dropped


def _read_sample(folder: Path, fmt: str, s: Sample, *, where: str) -> dict[str, np.ndarray]:
    """One sample's images as (3, 28, 28) uint8 BGR arrays; SampleError names the file."""
    out = {}
    for suffix, name in FORMATS[fmt].items():
        path = folder / f"{s.subject}_{s.clip}{suffix} .png"
        if not path.is_file():
            raise SampleError(s.key, f"image {path} (listed in {where}) is missing; restore it "
                                     f"from the official features, {_AGAIN}")
        img = read_color(path, key=s.key)
        if img.shape[:2] != (SIZE, SIZE):
            raise SampleError(s.key, f"image {path} is {img.shape[1]}×{img.shape[0]}, the "
                                     f"official images are {SIZE}×{SIZE}; restore the "
                                     f"official file, {_AGAIN}")
        out[name] = img.transpose(2, 0, 1)
    return out


def _read_points(path: Path) -> dict[str, dict[str, str]]:
    cols = ["name"] + [f"{c}_{a}" for c in ("leye", "reye", "lmouth", "rmouth") for a in "xy"]
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in cols if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path}: column(s) {', '.join(missing)} missing; a "
                                      f"points CSV has the columns {', '.join(cols)}")
            return {r["name"]: r for r in reader}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path}: not a readable CSV ({exc})") from None


def _points_of(rows: dict[str, dict[str, str]], s: Sample, path: Path) -> np.ndarray:
    name = f"{s.subject}_{s.clip} .png"
    if name not in rows:
        raise SampleError(s.key, f"{path} has no points for {name!r}; add its row, {_AGAIN}")
    try:
        return np.array([[float(rows[name][f"{c}_x"]), float(rows[name][f"{c}_y"])]
                         for c in ("leye", "reye", "lmouth", "rmouth")], np.float32)
    except (TypeError, ValueError):
        raise SampleError(s.key, f"{path}: a point of {name!r} is not a number; correct it, "
                                 f"{_AGAIN}") from None
