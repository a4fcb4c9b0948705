"""A feature variant's arrays and a stored clip's frames, as the store hands them out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import zarr

from mefeat.errors import StoreError
from mefeat.faults import fault


class _Store(Protocol):
    """What a variant needs of its store (``FeatureStore`` is one): its path and writable
    arrays, without importing the store module (which imports this one)."""

    path: Any

    def writable(self, name: str) -> zarr.Array: ...


class ClipReader:
    """Frames of one stored clip, decoded a chunk at a time (the last chunk is kept)."""

    def __init__(self, array: zarr.Array) -> None:
        self._array = array
        self._step = array.chunks[0]
        self._chunk: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._array.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} of a clip of {len(self)} frames")
        first = t - t % self._step
        if self._chunk is None or self._chunk[0] != first:
            self._chunk = (first, self._array[first:first + self._step])
        return self._chunk[1][t - first]


class Variant:
    """One set of flow features: arrays with the sample axis first, and a ``done`` mask."""

    def __init__(self, group: zarr.Group, name: str, store: _Store):
        self.group = group
        self.name = name
        self.store = store

    @property
    def attrs(self) -> dict[str, Any]:
        return self.group.attrs.asdict()

    @property
    def maps(self) -> list[str]:
        return list(self.attrs.get("maps", []))

    def done(self) -> np.ndarray:
        return self.group["done"][:]

    def errors(self) -> np.ndarray:
        """Why each sample that is not done has no features in this variant ("" when it
        was not tried, or is done)."""
        done = self.done()
        if "error" not in self.group:  # a store written before variants kept their errors
            return np.full(done.shape, "", dtype=object)
        err = np.array([str(v) for v in self.group["error"][:]], dtype=object)
        err[done] = ""
        return err

    def write_failure(self, index: int, reason: str) -> None:
        """Record why sample ``index`` could not be made in this variant (it stays not
        done; a later run tries again)."""
        fault("failure:before")
        self._array("error")[index] = reason

    def write_sample(self, index: int, keyframes: Sequence[int], maps: dict[str, np.ndarray]):
        """Write one sample's arrays, then (last) its done flag."""
        for name, value in maps.items():
            fault(f"sample:{name}:before")
            self._array(name)[index] = value
            fault(f"sample:{name}:after")
        fault("sample:keyframes:before")
        self._array("keyframes")[index] = np.asarray(keyframes, dtype=np.int32)
        fault("sample:done:before")
        self._array("done")[index] = True
        fault("sample:done:after")

    def _array(self, name: str) -> zarr.Array:
        return self.store.writable(f"features/{self.name}/{name}")

    def write_rows(self, indices: Sequence[int], arrays: dict[str, np.ndarray]) -> None:
        """Write many samples' arrays (row j of each array is sample ``indices[j]``), then
        (last) their done flags."""
        if not len(indices):
            return
        idx = np.asarray(indices, dtype=np.int64)
        for name, value in arrays.items():
            fault(f"rows:{name}:before")
            self._array(name).set_orthogonal_selection((idx,), value)
        fault("rows:done:before")
        self._array("done").set_orthogonal_selection((idx,), np.ones(len(idx), bool))
        fault("rows:done:after")

    def has(self, name: str) -> bool:
        """Whether this variant holds an array called ``name``."""
        return name in self.group

    def read_sample(self, index: int, names: Iterable[str]) -> dict[str, np.ndarray]:
        """One sample's arrays ``names`` (its row of each), done or not."""
        return {name: self.group[name][index] for name in names}

    def read(self, names: Iterable[str], *, only_done: bool = True) -> tuple[np.ndarray, dict]:
        """Bulk-read arrays ``names``; returns (sample indices, {name: array})."""
        done = self.done()
        idx = np.flatnonzero(done) if only_done else np.arange(done.size)
        out = {}
        for name in names:
            if name not in self.group:
                raise StoreError(
                    f"variant {self.name!r} of {self.store.path} has no array {name!r} "
                    f"(it has {self.maps})"
                )
            arr = self.group[name][:]  # one bulk read, then select
            out[name] = arr[idx]
        return idx, out


