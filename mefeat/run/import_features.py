"""Import the official 28×28 PNG feature folders into a store variant.

The published STSTNet/HTNet and CausalNet code trains on folders of PNGs (names
``<sub>_<clip> .png``, a space before the extension) listed by
``combined_3_class2_for_optical_flow.csv`` (dataset, sub, filename_o, label, ...). Importing
them puts the published inputs behind the same views and trainer as mefeat's own
extractions. Images are stored as OpenCV reads them (BGR), since the official code reads
them with ``cv2.imread``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from mefeat.datasets._sample import Sample
from mefeat.datasets.labels import THREE_CLASSES
from mefeat.errors import AnnotationError, DatasetLayoutError
from mefeat.frames import read_color
from mefeat.provenance import versions
from mefeat.store import FeatureStore

CSV_NAME = "combined_3_class2_for_optical_flow.csv"
# Per format: the image files of one sample (suffixes of "<sub>_<clip>") and array names.
FORMATS: dict[str, dict[str, str]] = {
    "htnet": {"": "image"},
    # CausalNet: onset→apex and apex→offset u_v_os images, then their direction maps.
    "causalnet": {"": "image", "_1": "image_ao", "_2": "dir_oa", "_3": "dir_ao"},
}


def import_features(
    folder: str | os.PathLike, *, fmt: str, store: str | os.PathLike,
    points: str | os.PathLike | None = None,
) -> tuple[int, str]:
    """Read an official feature folder into ``store`` (variant ``official-<fmt>``).

    Args:
        folder: the folder with the PNGs and ``combined_3_class2_for_optical_flow.csv``.
        fmt: ``htnet`` (one u_v_os image a sample; STSTNet's input too) or ``causalnet``.
        points: optional CSV of HTNet's 28-px region points per image (name, leye_x, leye_y,
            reye_x, reye_y, nose_x, nose_y, lmouth_x, lmouth_y, rmouth_x, rmouth_y); without
            it the HTNet view uses the official fallback points for every sample.
    Returns:
        (number of samples, variant name).
    """
    folder = Path(folder)
    if fmt not in FORMATS:
        raise DatasetLayoutError(f"unknown feature format {fmt!r}; choose one of {sorted(FORMATS)}")
    table = folder / CSV_NAME
    if not table.is_file():
        raise DatasetLayoutError(f"{folder}: no {CSV_NAME}; is this an official feature folder?")
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for col in ("dataset", "sub", "filename_o", "label"):
        if rows and col not in rows[0]:
            raise AnnotationError(f"{table}: column {col!r} missing")
    samples, images = [], {name: [] for name in FORMATS[fmt].values()}
    for line, row in enumerate(rows, start=2):
        stem = f"{row['sub']}_{row['filename_o']}"
        for suffix, name in FORMATS[fmt].items():
            path = folder / f"{stem}{suffix} .png"
            images[name].append(read_color(path, key=f"{table.name} row {line}"))
        label = int(row["label"])
        samples.append(Sample(
            dataset=row["dataset"], subject=row["sub"], clip=row["filename_o"], frames=(),
            onset_frame=-1, apex_frame=-1, offset_frame=-1, onset=-1, apex=-1, offset=-1,
            emotion=THREE_CLASSES[label], label=label))
    variant = f"official-{fmt}"
    config = {"imported_from": f"official {fmt} features", "csv_rows": len(rows)}
    with FeatureStore.create_or_resume(store, samples, config, provenance=versions()) as fs:
        fs.group.attrs["classes"] = list(THREE_CLASSES)
        arrays = {name: np.stack(v).transpose(0, 3, 1, 2) for name, v in images.items()}
        if points is not None:
            arrays["points"] = _read_points(Path(points), [f"{r['sub']}_{r['filename_o']} .png"
                                                           for r in rows])
        fs.write_imported(variant, arrays, {"format": f"official-{fmt}", "source": str(folder)})
    return len(samples), variant


def _read_points(path: Path, names: list[str]) -> np.ndarray:
    with path.open(newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    cols = ("leye", "reye", "lmouth", "rmouth")
    out = np.empty((len(names), 4, 2), np.float32)
    for i, name in enumerate(names):
        if name not in rows:
            raise AnnotationError(f"{path}: no points for {name!r}")
        out[i] = [[float(rows[name][f"{c}_x"]), float(rows[name][f"{c}_y"])] for c in cols]
    return out
