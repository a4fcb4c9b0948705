"""Test support: read a whole feature store, to compare two stores array for array."""

from __future__ import annotations

import numpy as np

from mefeat.store import FeatureStore


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
