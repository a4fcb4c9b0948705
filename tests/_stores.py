"""Test support: small demo stores, and a whole store read back to compare two stores."""

from __future__ import annotations

import numpy as np

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
    import shutil
    from pathlib import Path

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
