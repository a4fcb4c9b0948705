"""What a store is on disk: its schema version, sample columns, feature maps, fingerprints,
and how a path is told to be a store, nothing yet, or something else."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mefeat.datasets._sample import Sample
from mefeat.errors import StoreError

SCHEMA_VERSION = 1

# samples/ table: column -> zarr dtype. Strings are variable-length UTF-8.
SAMPLE_COLUMNS: dict[str, Any] = {
    "key": str,
    "dataset": str,
    "subject": str,
    "clip": str,
    "label": "int16",
    "onset": "int32",
    "apex": "int32",
    "offset": "int32",
    "onset_frame": "int64",
    "apex_frame": "int64",
    "offset_frame": "int64",
    "n_frames": "int32",
    "emotion": str,
    "status": str,
    "error": str,
}
# Columns a running extraction updates, chunked one sample a chunk so that each write is
# its own atomic file.
MUTABLE_COLUMNS = ("status", "error")

# How the writer opens arrays: every chunk it writes holds data, so zarr need not compare
# each chunk with the fill value to decide whether to skip it (a full pass over the chunk
# that cost more than writing it).
WRITE_CONFIG = {"write_empty_chunks": True}

# Feature arrays of a variant: name -> (channels, dtype).
MAPS: dict[str, tuple[int, str]] = {
    "flow_oa": (2, "float32"),
    "flow_ao": (2, "float32"),
    "strain_oa": (1, "float32"),
    "strain_ao": (1, "float32"),
    "mag_oa": (1, "float32"),
    "mag_ao": (1, "float32"),
    "dir_oa": (3, "uint8"),
    "dir_ao": (3, "uint8"),
}


def cast_maps(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A clip's feature maps in the dtypes the store keeps them in (:data:`MAPS`)."""
    return {k: v.astype(MAPS[k][1], copy=False) for k, v in maps.items()}


def annotation_record(s: Sample) -> dict[str, Any]:
    """What a store keeps of a sample's annotation (its fingerprint covers these): the key
    frames as numbers and as indices into the clip, the emotion and the label."""
    return {"onset_frame": s.onset_frame, "apex_frame": s.apex_frame,
            "offset_frame": s.offset_frame, "onset": s.onset, "apex": s.apex,
            "offset": s.offset, "emotion": s.emotion, "label": -1 if s.label is None else s.label}


def annotations_fingerprint(samples: Sequence[Sample]) -> str:
    """A hash of the annotations as read: every sample's key and ``annotation_record``."""
    return fingerprint([[s.key, annotation_record(s)] for s in samples])


def fingerprint(config: Any) -> str:
    """Stable short hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "", *,
                held: str = "store has", asked: str = "this run asks for") -> list[str]:
    """The settings that differ, as ``"key.sub: <held> A, <asked> B"``."""
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{prefix}{k}.", held=held, asked=asked)
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            diffs.append(f"{prefix}{k}: {held} {a!r}, {asked} {b!r}")
    return diffs


def check_local_target(path: Path) -> None:
    """Refuse to write a store over a file, or into a folder that holds other things."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a store; choose another --store (a new folder "
                         "ending in .zarr)")
    if (path / "zarr.json").is_file():
        is_store(str(path))  # refuses a Zarr group of another tool before we lock it
    elif path.is_dir():
        # What a killed creation may leave: our lock file, zarr's temporary files.
        other = sorted(c.name for c in path.iterdir()
                       if c.name != ".mefeat-writer.lock" and not c.name.endswith(".partial"))
        if other:
            raise StoreError(
                f"{path} is a folder with other files ({', '.join(other[:3])}...) and not a "
                "mefeat store; choose another --store (a new folder ending in .zarr)"
            )


def is_store(path: str) -> bool:
    """True for a complete store; False for nothing there or a store killed while created.

    A store gets its attributes last, so a group holding only our own (partial) folders
    and no ``schema_version`` is an interrupted creation that may be started again.
    """
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False
    if "schema_version" in group.attrs:
        return True
    with warnings.catch_warnings():  # our writer's lock file is no part of the hierarchy
        warnings.filterwarnings("ignore", message=r"Object at \.mefeat-writer\.lock")
        children = {name for name, _ in group.members()}
    if group.attrs.asdict() or not children <= {"samples", "frames", "features", "long"}:
        raise StoreError(
            f"{path}: a Zarr group that is not a mefeat store; choose another --store path"
        )
    return False


def variant_name(policy_name: str, flow: str, flow_size: int | None = None) -> str:
    """Variant names: the key-frame policy, plus the flow method when not TV-L1, plus the
    flow's size when it is computed on resized frames (``gt-28px``)."""
    name = policy_name if flow == "tvl1" else f"{policy_name}-{flow}"
    return name if flow_size is None else f"{name}-{flow_size}px"
