"""Export a store variant as the folders the official CausalNet, HTNet and STSTNet code read.

``mefeat export STORE --format causalnet|htnet|ststnet --out DIR`` writes the working
folder each official script runs in (layout and names: :mod:`mefeat.datasets.official`;
where each script reads them: CausalNet ``main_train.py:59-223``, HTNet
``main_HTNet.py:55-214``, STSTNet ``main.py:111-138``)::

    causalnet, htnet                              ststnet
    DIR/                                          DIR/
      combined_3_class2_for_optical_flow.csv        norm_u_v_os/<subject>/
      datasets/                                       u_train/<label>/<sub>_<clip> .png
        STSNet_whole_norm_u_v_os/                     u_test/<label>/<sub>_<clip> .png
          <sub>_<clip> .png  (causalnet also _1, _2, _3)
        three_norm_u_v_os/<subject>/u_train|u_test/<label>/<sub>_<clip> .png
        combined_datasets_whole/<imagename>   (htnet, from a store with aligned frames)
      mefeat-export.json                            mefeat-export.json

The subject folders and the CSV's ``sub`` are the store's subjects, ``filename_o`` its
clips, ``<label>`` the class id; ``u_test`` of a subject holds exactly its samples and
``u_train`` every other sample. Each fold file is a hard link to the sample's image (a copy
where the file system has no hard links), so the 442-sample composite's 30056 fold entries
cost no disk space. PNGs are lossless: ``cv2.imread`` gives back the exported arrays.

The images:

* an imported official variant (``official-htnet``, ``official-causalnet``): the stored
  images as they are (``official-htnet`` holds no ``_1.._3`` images, so no causalnet export);
* mefeat's own extraction: built by the views' functions. The "u_v_os" image is
  ``mefeat.views.uvs_image``: the flow and strain resized from the stored size to 28×28 by
  area averaging (``cv2.INTER_AREA``, ``mefeat.views.resize_maps``; displacements scaled
  with the image), BGR = (strain, v, u), each channel min-max scaled to 0..255 per sample
  and rounded. The direction maps (causalnet ``_2``/``_3``) are Algorithm 1's
  (``mefeat.flow.direction_map``) on the flows resized the same way, as the CausalNet view
  computes them.

CSV columns: ``dataset``, ``sub``, ``filename_o``, ``label`` from the store; ``imagename``
the apex JPEG name the official CSV gives (``datasets.official.apex_image_name``); ``apex``
the annotated apex frame number where the store knows it (empty for imported features, as
in the published CSV); ``sub_filename`` empty (empty in the published CSV, meaning unknown).
The apex JPEGs themselves (read only by HTNet, whose MTCNN finds its crop points on them)
are written for ``htnet`` from a store with aligned frames: the variant's apex frame as
aligned (grayscale, the store's size); an imported store has no frames, so they are not
written (copy ``datasets/combined_datasets_whole`` from the HTNet repository).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mefeat import views
from mefeat.datasets.official import (
    APEX_IMAGES,
    CSV_NAME,
    FOLDS,
    FORMATS,
    SIZE,
    STSTNET_FOLDS,
    TEST,
    TRAIN,
    WHOLE,
    apex_image_name,
    check_name,
    encode_png,
    image_name,
    write_table,
)
from mefeat.errors import MefeatError, StoreError
from mefeat.provenance import environment
from mefeat.store import FeatureStore, Variant
from mefeat.views import uvs_image

EXPORT_FORMATS = ("causalnet", "htnet", "ststnet")
MANIFEST = "mefeat-export.json"
# The arrays each export format writes: (file suffix, array name) as in the official folders.
_ARRAYS = {"causalnet": FORMATS["causalnet"], "htnet": FORMATS["htnet"],
           "ststnet": FORMATS["htnet"]}
RESIZE = ("cv2.INTER_AREA (area averaging, mefeat.views.resize_maps) from the stored size "
          "to 28×28, then per-sample min-max to 0..255")


@dataclass
class ExportSummary:
    """What one folder export wrote."""

    out: str
    store: str
    variant: str
    fmt: str
    written: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {self.out}: {len(self.written)} samples of {self.store} variant "
               f"{self.variant} in the official {self.fmt} layout, "
               f"{len(self.left_out)} left out"]
        out += [f"  left out {key}: {why}" for key, why in sorted(self.left_out.items())]
        return out + [f"  note: {n}" for n in self.notes]


def u_v_os_images(flow: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """The official "u_v_os" PNG of (N, 2, H, W) flows and (N, 1, H, W) strains:
    (N, 3, 28, 28) uint8, BGR = (strain, v, u), as ``mefeat.views.uvs_image``."""
    return uvs_image(flow, strain, SIZE).astype(np.uint8)


def direction_images(flow: np.ndarray) -> np.ndarray:
    """Algorithm 1's direction maps of (N, 2, H, W) flows resized to 28×28 (area
    averaging), (N, 3, 28, 28) uint8 BGR: what the CausalNet view feeds the model
    (``mefeat.views.direction_images``, whose values are these uint8s as floats)."""
    return views.direction_images(flow, SIZE).astype(np.uint8)


def official_images(var: Variant, fmt: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The images format ``fmt`` writes for the done samples of ``var``.

    Returns:
        (sample indices, {array name: (N, 3, 28, 28) uint8 BGR}); names as
        ``mefeat.datasets.official.FORMATS`` (image, image_ao, dir_oa, dir_ao).
    """
    names = list(_ARRAYS[fmt].values())
    imported = var.attrs.get("format")
    if imported:
        lacking = [n for n in names if not var.has(n)]
        if lacking:
            raise StoreError(
                f"{var.store.path}: variant {var.name!r} holds {imported} images "
                f"({', '.join(var.maps)}); the {fmt} layout also needs {', '.join(lacking)} "
                f"(the apex→offset images and direction maps): export it as htnet or "
                "ststnet, or import the CausalNet features (--format causalnet)"
            )
        idx, arrays = var.read(names)
        return idx, {n: np.asarray(arrays[n], np.uint8) for n in names}
    phases = ("oa", "ao") if fmt == "causalnet" else ("oa",)
    idx, a = var.read([f"{m}_{p}" for p in phases for m in ("flow", "strain")])
    out = {"image": u_v_os_images(a["flow_oa"], a["strain_oa"])}
    if fmt == "causalnet":
        out["image_ao"] = u_v_os_images(a["flow_ao"], a["strain_ao"])
        out["dir_oa"] = direction_images(a["flow_oa"])
        out["dir_ao"] = direction_images(a["flow_ao"])
    return idx, out


def export_official(
    store: str | os.PathLike, *, fmt: str, out: str | os.PathLike,
    variant: str | None = None, progress: bool = True,
) -> ExportSummary:
    """Write ``variant`` of ``store`` as the official ``fmt`` working folder ``out``.

    ``out`` must be new or an empty folder; it is written under a hidden sibling name and
    renamed at the end, so a folder that exists is complete. Samples not done in the
    variant are left out (listed in the summary).

    Raises:
        MefeatError: ``out`` holds files, a sample has no label, or the store's names
            cannot be written in the official layout (two datasets sharing a subject
            name, a space in a name, two samples with one file name).
        StoreError: the variant lacks the arrays ``fmt`` needs.
    """
    if fmt not in EXPORT_FORMATS:
        raise MefeatError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MefeatError(f"{out} exists and is not an empty folder; give a new --out folder "
                          "(the official scripts list every file in their folders)")
    fs = FeatureStore.open(store)
    name = fs.pick_variant(variant)
    var = fs.variant(name)
    table = fs.table()
    done = var.done()
    rows = _rows(table, np.flatnonzero(done), fmt)  # names first, images after
    if not rows:
        raise StoreError(f"{store}: variant {name!r} has no done samples to export")
    idx, images = official_images(var, fmt)
    if not np.array_equal(idx, np.flatnonzero(done)):
        raise StoreError(f"{store}: variant {name!r} changed while it was read (an extraction "
                         "is writing it?); export again when it has finished")
    summary = ExportSummary(out=str(out), store=str(store), variant=name, fmt=fmt)
    errors = var.errors()
    summary.left_out = {str(table["key"][i]): str(errors[i] or "not done in this variant")
                        for i in np.flatnonzero(~done)}
    apex = _apex_frames(fs, var, table, idx) if fmt == "htnet" else {}
    if fmt == "htnet" and len(apex) < len(idx):
        summary.notes.append(
            f"no apex JPEGs for {len(idx) - len(apex)} samples (the store has no aligned "
            f"frames for them: imported features?); HTNet's main_HTNet.py reads "
            f"{APEX_IMAGES}/<imagename> for its MTCNN points: copy that folder from the "
            "HTNet repository")
    if max(int(r["label"]) for r in rows) >= 3:
        summary.notes.append("labels above 2: the official models are built with "
                             "num_classes=3; change it in the script for this label scheme")
    manifest = {"store": str(store), "variant": name, "format": fmt, "samples": len(rows),
                "images": ("as stored (imported official features)" if var.attrs.get("format")
                           else f"mefeat.views: {RESIZE}")}
    files = _write_folder(out, fmt, rows, idx, images, apex, manifest, progress)
    if files.copied:
        summary.notes.append("this file system has no hard links: the fold files are copies")
    summary.written = [str(table["key"][i]) for i in idx]
    return summary


def _write_folder(out: Path, fmt: str, rows: list[dict], idx: np.ndarray,
                  images: dict[str, np.ndarray], apex: dict[int, np.ndarray],
                  manifest: dict, progress: bool) -> _Files:
    """The official folder, written under a hidden sibling name and renamed at the end."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = _Files()
    try:
        if fmt == "ststnet":
            _write_ststnet(tmp, rows, images, files, progress)
        else:
            _write_whole(tmp, fmt, rows, idx, images, apex, files, progress)
        (tmp / MANIFEST).write_text(json.dumps({
            **manifest, "fold_files": "copies" if files.copied else "hard links",
            "environment": environment()}, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked by the caller)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def _write_ststnet(tmp: Path, rows, images, files: _Files, progress: bool) -> None:
    """STSTNet's LOSO folders: each image in its subject's test folder, linked into every
    other subject's training folder."""
    from tqdm import tqdm

    subjects = sorted({r["sub"] for r in rows})
    for j, r in enumerate(tqdm(rows, desc="export ststnet", unit="sample",
                               disable=not progress)):
        test = tmp / STSTNET_FOLDS / r["sub"] / TEST / str(r["label"]) / r["name"]
        files.write(test, encode_png(images["image"][j]))
        for other in subjects:
            if other != r["sub"]:
                files.link(test, tmp / STSTNET_FOLDS / other / TRAIN / str(r["label"])
                           / r["name"])


def _write_whole(tmp: Path, fmt: str, rows, idx, images, apex, files: _Files,
                 progress: bool) -> None:
    """HTNet's and CausalNet's layout: the CSV, every image once in the whole-set folder,
    linked into the LOSO split folders, and (HTNet) the apex JPEGs."""
    from tqdm import tqdm

    subjects = sorted({r["sub"] for r in rows})
    write_table(tmp / CSV_NAME, rows)
    for j, r in enumerate(tqdm(rows, desc=f"export {fmt}", unit="sample",
                               disable=not progress)):
        for suffix, array in _ARRAYS[fmt].items():
            files.write(tmp / WHOLE / image_name(r["sub"], r["filename_o"], suffix),
                        encode_png(images[array][j]))
        whole = tmp / WHOLE / r["name"]
        for other in subjects:
            split = TEST if other == r["sub"] else TRAIN
            files.link(whole, tmp / FOLDS / other / split / str(r["label"]) / r["name"])
        if int(idx[j]) in apex:
            files.write(tmp / APEX_IMAGES / r["imagename"], _encode_jpeg(apex[int(idx[j])]))


def _rows(table: dict[str, np.ndarray], idx: np.ndarray, fmt: str) -> list[dict]:
    """The CSV rows of the exported samples (plus ``name``, their image file name),
    after checking that the official layout can hold them."""
    rows, owner, names = [], {}, {}
    for i in idx:
        key, ds = str(table["key"][i]), str(table["dataset"][i])
        sub, clip, label = str(table["subject"][i]), str(table["clip"][i]), int(table["label"][i])
        if label < 0:
            raise MefeatError(f"{key} has no class label: the official folders are split by "
                              "label; extract with --labels SCHEME (e.g. megc2019)")
        check_name(key, sub, clip)
        if owner.setdefault(sub, ds) != ds:
            raise MefeatError(
                f"subject {sub!r} is in both {owner[sub]!r} and {ds!r}: the official layout "
                "has one folder a subject (one LOSO fold), which would merge them; export "
                "the datasets from separate stores")
        files = [image_name(sub, clip, s) for s in _ARRAYS[fmt]]
        if fmt == "htnet":
            files.append(apex_image_name(ds, sub, clip))
        for f in files:
            if names.setdefault(f, key) != key:
                raise MefeatError(f"{names[f]} and {key} both make the file name {f!r} in the "
                                  "official layout; rename one of the clips")
        apex = int(table["apex_frame"][i])
        rows.append({"dataset": ds, "sub": sub, "filename_o": clip, "label": label,
                     "apex": apex if apex >= 0 else "",
                     "imagename": apex_image_name(ds, sub, clip), "sub_filename": "",
                     "name": image_name(sub, clip)})
    return rows


def _apex_frames(fs: FeatureStore, var: Variant, table: dict[str, np.ndarray],
                 idx: np.ndarray) -> dict[int, np.ndarray]:
    """The variant's aligned apex frame of each sample that has frames in the store."""
    if var.attrs.get("format") or not var.has("keyframes"):
        return {}
    _, kf = var.read(["keyframes"])
    out = {}
    for j, i in enumerate(idx):
        key = str(table["key"][i])
        if fs.has_frames(key):
            out[int(i)] = fs.clip(key)[int(kf["keyframes"][j][1])]
    return out


def _encode_jpeg(frame: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise MefeatError("OpenCV could not encode an apex frame as JPEG")
    return data.tobytes()


class _Files:
    """Writes files and hard links (copies where links fail), making each folder once."""

    def __init__(self) -> None:
        self._dirs: set[Path] = set()
        self.copied = 0

    def _parent(self, path: Path) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)

    def write(self, path: Path, data: bytes) -> None:
        self._parent(path)
        path.write_bytes(data)

    def link(self, src: Path, dst: Path) -> None:
        self._parent(dst)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
            self.copied += 1
