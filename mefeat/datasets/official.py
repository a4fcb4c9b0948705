"""The official 28×28 feature folders of STSTNet, HTNet and CausalNet: names, CSV, images.

The published code of STSTNet (christy1206/STSTNet ``main.py``), HTNet
(wangzhifengharrison/HTNet ``main_HTNet.py``) and CausalNet (tony19980810/CausalNet
``main_train.py``) trains on 28×28 PNGs named ``<sub>_<filename_o><suffix> .png`` (a space
before the extension), read with ``cv2.imread`` (BGR, uint8, no scaling), and lists the
samples in ``combined_3_class2_for_optical_flow.csv``. This module is that format, both ways:
reading a folder of it (``OfficialFeatures``, for ``mefeat import-features``) and the names,
CSV and PNG encoding a writer needs (``mefeat export --format causalnet|htnet|ststnet``).

A feature folder is either flat (the published ``STSNet_whole_norm_u_v_os``, as in
``shared/data/features/cde28_*``, with the CSV beside the images)::

    <root>/
      combined_3_class2_for_optical_flow.csv   the samples (columns: HEADER)
      <sub>_<filename_o> .png                  onset→apex "u_v_os" image: BGR = (strain, v, u)
      <sub>_<filename_o>_1 .png                causalnet: apex→offset u_v_os image
      <sub>_<filename_o>_2 .png                causalnet: onset→apex direction map
      <sub>_<filename_o>_3 .png                causalnet: apex→offset direction map

or the working folder the official scripts run in (every path relative to it)::

    <root>/
      combined_3_class2_for_optical_flow.csv   CausalNet main_train.py:59, HTNet main_HTNet.py:55
      datasets/
        STSNet_whole_norm_u_v_os/              the pixels, flat, only the CSV's images (both
          <sub>_<filename_o>[_1|_2|_3] .png    scripts look every listed file up in the CSV)
        three_norm_u_v_os/<subject>/           LOSO folds: file names and labels only
          u_train/<label>/<sub>_<filename_o> .png   every other subject's samples
          u_test/<label>/<sub>_<filename_o> .png    this subject's samples
        combined_datasets_whole/<imagename>    HTNet only: the apex face JPEGs its MTCNN reads
      norm_u_v_os/<subject>/u_train|u_test/<label>/<sub>_<filename_o> .png
                                               STSTNet main.py:111-138: the pixels, per fold

``<label>`` is the class id (negative 0, positive 1, surprise 2); a label folder exists only
where it holds a file. Only the CSV's ``sub``, ``filename_o``, ``label`` (and ``imagename``
for HTNet) are read by the official code; ``apex`` and ``sub_filename`` are empty in the
published CSV.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from mefeat.datasets._sample import Dropped, Sample
from mefeat.datasets.labels import THREE_CLASSES
from mefeat.errors import AnnotationError, DatasetLayoutError, SampleError
from mefeat.frames import read_color

CSV_NAME = "combined_3_class2_for_optical_flow.csv"
HEADER = ("dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename")
COLUMNS = ("dataset", "sub", "filename_o", "label")  # the ones a reader needs
SIZE = 28  # every official image is 28×28; the views' region boxes assume it
# Per format: the image files of one sample (suffixes of "<sub>_<clip>") and array names.
FORMATS: dict[str, dict[str, str]] = {
    "htnet": {"": "image"},  # STSTNet's input too
    # CausalNet: onset→apex and apex→offset u_v_os images, then their direction maps.
    "causalnet": {"": "image", "_1": "image_ao", "_2": "dir_oa", "_3": "dir_ao"},
}
# Folders of the official working folder, relative to it.
WHOLE = Path("datasets", "STSNet_whole_norm_u_v_os")
FOLDS = Path("datasets", "three_norm_u_v_os")
APEX_IMAGES = Path("datasets", "combined_datasets_whole")
STSTNET_FOLDS = Path("norm_u_v_os")
TRAIN, TEST = "u_train", "u_test"
POINT_PARTS = ("leye", "reye", "lmouth", "rmouth")  # HTNet's four crop centres (no nose)
POINT_COLUMNS = ("name", *(f"{c}_{a}" for c in POINT_PARTS for a in "xy"))


def image_name(subject: str, clip: str, suffix: str = "") -> str:
    """A sample's official file name: ``sub01_EP02_01f_1 .png`` (space before ``.png``)."""
    return f"{subject}_{clip}{suffix} .png"


def apex_image_name(dataset: str, subject: str, clip: str) -> str:
    """The ``imagename`` column: the sample's apex JPEG in ``combined_datasets_whole``.

    ``<sub>_<clip>.jpg``, except that SMIC's names write the clip's subject number without
    its leading zero (sub ``s01``, clip ``s01_ne_01`` → ``s01_s1_ne_01.jpg``); this rule
    gives the published CSV's ``imagename`` on all of its 442 rows.
    """
    if dataset in ("smic", "smic-e"):
        clip = re.sub(r"^s0*(\d+)_", lambda m: f"s{int(m.group(1))}_", clip, flags=re.I)
    return f"{subject}_{clip}.jpg"


def check_name(key: str, subject: str, clip: str) -> None:
    """Refuse a subject or clip that the official naming cannot carry.

    The scripts find a sample's siblings from the part of its name before the first space
    (``n_img.split(' ')[0]``) and a subject is a folder name.
    """
    for what, value in (("subject", subject), ("clip", clip)):
        if not value or " " in value or "/" in value or "\\" in value:
            raise DatasetLayoutError(
                f"{key}: {what} {value!r} cannot be written in the official layout (a space "
                "or a slash in it breaks the official scripts' file names); rename it"
            )


def encode_png(image: np.ndarray) -> bytes:
    """A (3, H, W) BGR uint8 image as the PNG bytes that ``cv2.imread`` reads back to it."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) BGR image, got shape {image.shape}")
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image.transpose(1, 2, 0), np.uint8))
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return data.tobytes()


def write_table(path: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> None:
    """Write ``combined_3_class2_for_optical_flow.csv``: the official header, one row a
    sample (missing cells empty), UTF-8, ``\\n`` line ends, as the published file."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n", extrasaction="raise")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in HEADER})


class OfficialFeatures:
    """A folder of the official 28×28 features in format ``fmt`` (``htnet`` or
    ``causalnet``), flat or as the official working folder (see the module docstring).

    ``read()`` gives the CSV's samples; ``images(sample)`` one sample's images as OpenCV
    reads them (BGR), ``(3, 28, 28)`` uint8 by array name (``FORMATS[fmt]``).
    """

    def __init__(self, root: str | os.PathLike, *, fmt: str):
        if fmt not in FORMATS:
            raise DatasetLayoutError(
                f"unknown feature format {fmt!r}; choose one of {sorted(FORMATS)}")
        self.root = Path(root)
        self.fmt = fmt
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{self.root}: no such folder; give the official feature folder")
        self.table = self.root / CSV_NAME
        if not self.table.is_file():
            raise DatasetLayoutError(
                f"{self.root}: no {CSV_NAME}; is this an official feature folder?")
        # The working folder of the official scripts keeps its pixels under datasets/.
        whole = self.root / WHOLE
        self.images_dir = whole if whole.is_dir() else self.root

    def path(self, s: Sample, suffix: str = "") -> Path:
        return self.images_dir / image_name(s.subject, s.clip, suffix)

    def read(self) -> tuple[list[Sample], list[int], list[Dropped]]:
        """The CSV's samples with their line numbers, and the rows left out with why.

        Raises:
            AnnotationError: a needed column is missing, two rows name one clip, the file
                is not a CSV or no row is usable.
        """
        table = self.table
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
                    f"{table}: rows {seen[s.key]} and {line} are both {s.key}; which images "
                    "belong to which row is ambiguous: delete one of the rows"
                )
            seen[s.key] = line
            samples.append(s)
            lines.append(line)
        if not samples:
            raise AnnotationError(f"{table}: no usable rows ({len(dropped)} left out: "
                                  f"{'; '.join(map(str, dropped[:3])) or 'the file is empty'})")
        return samples, lines, dropped

    def images(self, s: Sample, *, where: str = CSV_NAME) -> dict[str, np.ndarray]:
        """One sample's images as (3, 28, 28) uint8 BGR arrays by array name.

        Raises:
            SampleError: an image is missing, unreadable or not 28×28 (names the file).
        """
        out = {}
        for suffix, name in FORMATS[self.fmt].items():
            path = self.path(s, suffix)
            if not path.is_file():
                raise SampleError(s.key, f"image {path} (listed in {where}) is missing; "
                                         "restore it from the official features")
            img = read_color(path, key=s.key)
            if img.shape[:2] != (SIZE, SIZE):
                raise SampleError(s.key, f"image {path} is {img.shape[1]}×{img.shape[0]}, the "
                                         f"official images are {SIZE}×{SIZE}; restore the "
                                         "official file")
            out[name] = img.transpose(2, 0, 1)
        return out


def read_points(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """A CSV of HTNet's 28-px region points, one row per image name (``POINT_COLUMNS``;
    a nose column is allowed and not read)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in POINT_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path}: column(s) {', '.join(missing)} missing; a "
                                      f"points CSV has the columns {', '.join(POINT_COLUMNS)}")
            return {r["name"]: r for r in reader}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path}: not a readable CSV ({exc})") from None


def points_of(rows: Mapping[str, Mapping[str, str]], s: Sample,
              path: str | os.PathLike) -> np.ndarray:
    """Sample ``s``'s four points (x, y) from ``read_points`` rows, (4, 2) float32.

    Raises:
        SampleError: no row for the sample's image, or a cell that is not a number.
    """
    name = image_name(s.subject, s.clip)
    if name not in rows:
        raise SampleError(s.key, f"{path} has no points for {name!r}; add its row")
    try:
        return np.array([[float(rows[name][f"{c}_x"]), float(rows[name][f"{c}_y"])]
                         for c in POINT_PARTS], np.float32)
    except (TypeError, ValueError):
        raise SampleError(s.key, f"{path}: a point of {name!r} is not a number; "
                                 "correct it") from None
