"""Import the official 28×28 PNG feature folders into a store variant.

The published STSTNet/HTNet and CausalNet code trains on folders of PNGs listed by
``combined_3_class2_for_optical_flow.csv``; the format (names, CSV, images, the points
CSV) is :mod:`mefeat.datasets.official`. Importing them puts the published inputs behind the
same views and trainer as mefeat's own extractions. Images are stored as OpenCV reads them
(BGR), since the official code reads them with ``cv2.imread``.

The import behaves like ``extract``: a problem with the folder as a whole (no CSV, a
missing column, two rows for one clip) is refused before anything is written; a row with
an unusable cell is left out and reported (the store's ``dropped``); a sample whose PNG is
missing, corrupt or of another size is recorded as failed (the store's error column, shown
by ``mefeat inspect``) while every other sample is imported. Running the same import into
the same store again imports only the samples not yet done, so restoring a file and
re-running finishes the job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mefeat.datasets._sample import Dropped
from mefeat.datasets.labels import THREE_CLASSES
from mefeat.datasets.official import (
    CSV_NAME,
    FORMATS,
    SIZE,
    OfficialFeatures,
    points_of,
    read_points,
)
from mefeat.errors import SampleError
from mefeat.provenance import environment, file_sha256
from mefeat.run.extract import detail_lines
from mefeat.signals import deferred_interrupts
from mefeat.store import FeatureStore

__all__ = ["CSV_NAME", "FORMATS", "ImportSummary", "import_features"]

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
        folder: the folder with ``combined_3_class2_for_optical_flow.csv`` and the PNGs beside
            it, or the official scripts' working folder (the CSV, and the PNGs under
            ``datasets/STSNet_whole_norm_u_v_os``, as ``mefeat export`` writes it).
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
    source = OfficialFeatures(folder, fmt=fmt)
    samples, lines, dropped = source.read()
    point_rows = read_points(points) if points is not None else None
    variant = f"official-{fmt}"
    # The CSV's hash: a changed label must not resume into a store made from the old one.
    config = {"imported_from": f"official {fmt} features",
              "csv_sha256": file_sha256(source.table)}
    settings = {"format": variant, "points_sha256": file_sha256(points)}
    shapes = {name: ((3, SIZE, SIZE), "uint8") for name in FORMATS[fmt].values()}
    if point_rows is not None:
        shapes["points"] = ((4, 2), "float32")
    summary = ImportSummary(store=str(store), variant=variant, dropped=dropped)
    with FeatureStore.create_or_resume(store, samples, config, provenance=environment()) as fs:
        fs.set_info(dropped=[vars(d) for d in dropped], classes=THREE_CLASSES)
        var = fs.require_imported(variant, shapes, settings, source=str(Path(folder)))
        done, status = var.done(), fs.column("status")
        todo = []
        for i, s in enumerate(samples):
            if done[i]:
                if status[i] != "done":  # killed after its done flag, before its status
                    fs.set_status(i, "done")
                summary.resumed.append(s.key)
            else:
                todo.append(i)
        for start in range(0, len(todo), BATCH):
            _import_batch(fs, var, source, samples, lines, todo[start:start + BATCH],
                          point_rows, points, summary)
    return summary


BATCH = 32  # samples read, then written together (an interrupt keeps the batches written)


def _import_batch(fs, var, source, samples, lines, batch, point_rows, points,
                  summary: ImportSummary) -> None:
    rows: dict[str, list[np.ndarray]] = {}
    written, failed = [], []
    for i in batch:
        s = samples[i]
        try:
            arrays = source.images(s, where=f"{source.table.name} row {lines[i]}")
            if point_rows is not None:
                arrays["points"] = points_of(point_rows, s, points)
        except SampleError as exc:
            failed.append(i)
            summary.failed[s.key] = f"{exc.reason}, {_AGAIN}"
            continue
        for name, value in arrays.items():
            rows.setdefault(name, []).append(value)
        written.append(i)
    # Arrays first, done flags next, status last, as one step an interrupt cannot cut:
    # a run killed in between leaves samples that are simply imported again.
    with deferred_interrupts():
        var.write_rows(written, {name: np.stack(v) for name, v in rows.items()})
        fs.set_statuses(written, "done")
        fs.set_statuses(failed, "failed", [summary.failed[samples[i].key] for i in failed])
    summary.done += [samples[i].key for i in written]
