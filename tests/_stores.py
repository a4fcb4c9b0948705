"""Test support: small demo stores, a whole store read back to compare two stores, and small
copies of the official feature folders."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from mefeat.datasets.official import CSV_NAME
from mefeat.demo import build_demo
from mefeat.run.extract import extract
from mefeat.store import FeatureStore


def demo_store(root, *, subjects: int, clips: int, size: int, **extract_options):
    """A demo dataset under ``root/data`` extracted into ``root/s.zarr`` (5-class CASME II
    labels); returns the store's path."""
    ds = build_demo(root / "data", subjects=subjects, clips=clips)
    store = root / "s.zarr"
    extract(ds.root, dataset="casme2", annotations=ds.annotations, store=store,
            label_scheme="casme2-5", size=size, progress=False, **extract_options)
    return store


def store_arrays(store) -> dict[str, np.ndarray]:
    """Every array of a store by name: variants, frames, landmarks, status and errors."""
    fs = FeatureStore.open(store)
    out = {}
    for name in fs.variants():
        g = fs.group[f"features/{name}"]
        for arr in g.array_keys():
            out[f"{name}/{arr}"] = g[arr][:]
    for key in fs.column("key"):
        if fs.has_frames(key):
            frames, landmarks = fs.read_frames(key)
            out[f"frames/{key}"] = frames
            out[f"landmarks/{key}"] = landmarks
    out["status"] = fs.column("status")
    out["error"] = fs.column("error")
    return out


def add_short_clip(root, annotations, name: str = "EP99_01"):
    """Copy the clip of the spreadsheet's first row to ``name`` and annotate it with
    offset = onset + 1 (a valid annotation that leaves no frame to spot an apex in);
    returns the new clip's key."""
    from openpyxl import load_workbook

    wb = load_workbook(annotations)
    header = [c.value for c in wb.active[1]]
    row = [c.value for c in wb.active[2]]
    clip = next(Path(root).glob(f"*/{row[header.index('Filename')]}"))
    shutil.copytree(clip, clip.with_name(name))
    onset = row[header.index("OnsetFrame")]
    row[header.index("Filename")] = name
    row[header.index("ApexFrame")] = onset
    row[header.index("OffsetFrame")] = onset + 1
    wb.active.append(row)
    wb.save(annotations)
    return f"casme2/{clip.parent.name}/{name}"


def official_subset(folder: Path, dest: Path, subjects: int) -> Path:
    """A copy of an official feature folder with its first ``subjects`` subjects only."""
    dest.mkdir(parents=True)
    table = folder / CSV_NAME
    with table.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["sub"] for r in rows})[:subjects]
    rows = [r for r in rows if r["sub"] in keep]
    with (dest / table.name).open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        for png in folder.glob(f"{r['sub']}_{r['filename_o']}*.png"):
            shutil.copy(png, dest / png.name)
    return dest
