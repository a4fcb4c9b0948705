"""FeatureStore and Variant: the only code that knows the store's layout."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mefeat import __version__
from mefeat.datasets._sample import Sample
from mefeat.errors import StoreError
from mefeat.faults import fault

SCHEMA_VERSION = 1

# samples/ table: column -> zarr dtype. Strings are variable-length UTF-8.
_SAMPLE_COLUMNS: dict[str, Any] = {
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
_MUTABLE = ("status", "error")

# How the writer opens arrays: every chunk it writes holds data, so zarr need not compare
# each chunk with the fill value to decide whether to skip it (a full pass over the chunk
# that cost more than writing it).
_WRITE_CONFIG = {"write_empty_chunks": True}

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


def annotation_record(s: Sample) -> dict[str, Any]:
    """What a store keeps of a sample's annotation (its fingerprint covers these)."""
    return {"onset_frame": s.onset_frame, "apex_frame": s.apex_frame,
            "offset_frame": s.offset_frame, "n_frames": s.n_frames, "emotion": s.emotion,
            "label": -1 if s.label is None else s.label}


def annotations_fingerprint(samples: Sequence[Sample]) -> str:
    """A hash of the annotations as read: every sample's key and ``annotation_record``."""
    return fingerprint([[s.key, annotation_record(s)] for s in samples])


def fingerprint(config: Any) -> str:
    """Stable short hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            diffs.append(f"{prefix}{k}: store has {a!r}, this run asks for {b!r}")
    return diffs


# File descriptors of the writer locks this process holds; a forked child closes its copies.
_HELD_LOCKS: set[int] = set()
_AT_FORK_REGISTERED = False


def _close_locks_in_child() -> None:
    # flock belongs to the open file, shared by every forked copy of the descriptor: a pool
    # worker that kept its copy would keep the store locked after the writer was killed,
    # and the resume would be refused. The child never writes, so it lets go of its copies.
    for fd in _HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


class _WriterLock:
    """An exclusive advisory lock so that two extractions never write one store at once."""

    def __init__(self, root: Path):
        self.path = root / ".mefeat-writer.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        global _AT_FORK_REGISTERED
        if not _AT_FORK_REGISTERED:
            os.register_at_fork(after_in_child=_close_locks_in_child)
            _AT_FORK_REGISTERED = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent}: another mefeat process (pid {holder}) is writing this "
                "store; wait for it to finish (it resumes where it stops) or use another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        if self._fd is not None:
            _HELD_LOCKS.discard(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class FeatureStore:
    """A feature store on disk (or any fsspec URL zarr accepts).

    Use ``FeatureStore.open(path)`` to read, ``FeatureStore.create_or_resume(...)`` to
    write. Readers see only samples whose ``status`` is ``done`` and variant rows whose
    ``done`` flag is set.
    """

    def __init__(self, group: zarr.Group, path: str, *, lock: _WriterLock | None = None):
        self.group = group
        self.path = path
        self._lock = lock
        self._table_cache: dict[str, np.ndarray] | None = None
        self._writable: dict[str, zarr.Array] = {}

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r") -> FeatureStore:
        """Open an existing store; refuse one written by a newer schema."""
        path = str(path)
        try:
            group = zarr.open_group(path, mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise StoreError(
                f"{path}: no mefeat store here; make one with `mefeat extract`"
            ) from None
        attrs = group.attrs.asdict()
        if "schema_version" not in attrs:
            raise StoreError(f"{path}: a Zarr group but not a mefeat store (no schema_version)")
        if attrs["schema_version"] > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer mefeat (store schema {attrs['schema_version']}, "
                f"this mefeat {__version__} reads up to {SCHEMA_VERSION}); upgrade mefeat"
            )
        return cls(group, path)

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        samples: Sequence[Sample] | None,
        config: dict[str, Any],
        *,
        provenance: dict[str, Any] | None = None,
    ) -> FeatureStore:
        """Open ``path`` for writing, creating it for ``samples`` and ``config`` if needed.

        An existing store must have been made with the same ``config`` and the same
        samples; otherwise a ``StoreError`` names each setting (or sample) that differs.
        ``samples=None``: the store's own (it must exist), e.g. to add variants to it.
        """
        path = str(path)
        lock = _WriterLock(Path(path)) if "://" not in path else None
        if lock:
            _check_local_target(Path(path))
            lock.acquire()
        try:
            exists = _exists(path)
            if exists:
                store = cls.open(path, mode="r+")
                store._lock = lock
                # The settings first (a new label scheme changes every label), then the
                # samples, whose check names the ones whose annotation changed.
                store._check_config(config, but=("annotations",))
                if samples is not None:
                    store._check_samples(samples)
                return store
            if samples is None:
                raise StoreError(f"{path}: no mefeat store here; make one with `mefeat "
                                 "extract` and a dataset folder first")
            # "a", not "w": "w" would delete the lock file we hold. An interrupted creation
            # is simply written over.
            group = zarr.open_group(path, mode="a")
            store = cls(group, path, lock=lock)
            store._init(samples, config, provenance or {})
            return store
        except BaseException:
            if lock:
                lock.release()
            raise

    def close(self) -> None:
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init(self, samples: Sequence[Sample], config: dict[str, Any], prov: dict) -> None:
        keys = [s.key for s in samples]
        for key in keys:  # each part becomes a folder of the store
            parts = key.split("/")
            if any(p in ("", ".", "..") or not p.isprintable() or not _utf8(p) for p in parts):
                raise StoreError(
                    f"sample key {key!r} cannot name a folder of the store (an empty, '.' or "
                    "'..' part, control characters or undecodable bytes); rename the clip"
                )
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise StoreError(f"duplicate sample keys {dup[:5]}: the reader must make keys unique")
        table = self.group.require_group("samples")
        n = len(samples)
        rows = {
            "key": keys,
            "dataset": [s.dataset for s in samples],
            "subject": [s.subject for s in samples],
            "clip": [s.clip for s in samples],
            "label": [-1 if s.label is None else s.label for s in samples],
            "onset": [s.onset for s in samples],
            "apex": [s.apex for s in samples],
            "offset": [s.offset for s in samples],
            "onset_frame": [s.onset_frame for s in samples],
            "apex_frame": [s.apex_frame for s in samples],
            "offset_frame": [s.offset_frame for s in samples],
            "n_frames": [s.n_frames for s in samples],
            "emotion": [s.emotion for s in samples],
            "status": ["pending"] * n,
            "error": [""] * n,
        }
        for name, dtype in _SAMPLE_COLUMNS.items():
            chunks = (1,) if name in _MUTABLE else (max(n, 1),)
            arr = table.create_array(name, shape=(n,), dtype=dtype, chunks=chunks,
                                     overwrite=True)
            if n:
                arr[:] = np.asarray(rows[name], dtype=object if dtype is str else dtype)
        self.group.require_group("frames")
        self.group.require_group("features")
        fault("store:create")
        # Attributes last: a store without them is not yet a store.
        self.group.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "mefeat_version": __version__,
                "config": config,
                "fingerprint": fingerprint(config),
                "provenance": prov,
            }
        )

    def _check_config(self, config: dict[str, Any], *, but: Sequence[str] = ()) -> None:
        """Refuse other settings than the store's (keys in ``but`` left to other checks)."""
        # Stores of earlier mefeat fingerprinted the annotation file's bytes; the samples as
        # read (``_check_samples``) are what counts.
        skip = {*but, "annotations_sha256"}
        old = {k: v for k, v in self.config.items() if k not in skip}
        config = {k: v for k, v in config.items() if k not in skip}
        if fingerprint(old) != fingerprint(config):
            diffs = "; ".join(_config_diff(old, config))
            raise StoreError(
                f"{self.path} was made with other settings ({diffs}); "
                "use another --store or the store's own settings"
            )

    def _check_samples(self, samples: Sequence[Sample]) -> None:
        """The samples as read must be the store's: the same keys, and for each the same
        key frames, frame count, emotion and label (what the store was made from)."""
        keys = list(self.column("key"))
        new = [s.key for s in samples]
        if keys != new:
            missing = sorted(set(new) - set(keys))[:3]
            extra = sorted(set(keys) - set(new))[:3]
            raise StoreError(
                f"{self.path} holds another list of samples ({len(keys)} in the store, "
                f"{len(new)} now; new e.g. {missing}, gone e.g. {extra}); the annotations "
                "or the dataset folder changed: use another --store"
            )
        table = self.table()
        changed = []
        for i, s in enumerate(samples):
            row = annotation_record(s)
            stored = {k: table[k][i].item() if hasattr(table[k][i], "item") else table[k][i]
                      for k in row}
            diffs = [f"{k}: store has {stored[k]!r}, now {v!r}" for k, v in row.items()
                     if stored[k] != v]
            if diffs:
                changed.append(f"{s.key} ({'; '.join(diffs)})")
        if changed:
            shown = "; ".join(changed[:5]) + (f"; … {len(changed) - 5} more"
                                               if len(changed) > 5 else "")
            raise StoreError(
                f"{self.path}: the annotations changed for {len(changed)} sample(s): {shown}; "
                "use another --store, or the annotations the store was made with"
            )

    # -- metadata ----------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return self.group.attrs.asdict()

    @property
    def config(self) -> dict[str, Any]:
        return self.attrs.get("config", {})

    def set_info(self, *, dropped: list[dict] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        """Record the rows the reader left out (``dropped``) and the label scheme's class
        names (``classes``), as the store's attributes of those names."""
        info: dict[str, Any] = {}
        if dropped is not None:
            info["dropped"] = list(dropped)
        if classes is not None:
            info["classes"] = list(classes)
        self.group.attrs.update(info)

    def column(self, name: str) -> np.ndarray:
        if name not in _SAMPLE_COLUMNS:
            raise KeyError(f"no sample column {name!r}; columns: {list(_SAMPLE_COLUMNS)}")
        values = self.group["samples"][name][:]
        if _SAMPLE_COLUMNS[name] is str:  # zarr gives numpy's StringDType; plain str is simpler
            return np.array([str(v) for v in values], dtype=object)
        return values

    def table(self) -> dict[str, np.ndarray]:
        """All sample columns as numpy arrays (one bulk read each)."""
        return {name: self.column(name) for name in _SAMPLE_COLUMNS}

    def __len__(self) -> int:
        return self.group["samples"]["key"].shape[0]

    def samples(self) -> list[Sample]:
        """The store's samples as ``Sample`` records (no frame paths: frames are inside)."""
        t = self.table()
        return [
            Sample(dataset=t["dataset"][i], subject=t["subject"][i], clip=t["clip"][i],
                   frames=(), onset_frame=int(t["onset_frame"][i]),
                   apex_frame=int(t["apex_frame"][i]), offset_frame=int(t["offset_frame"][i]),
                   onset=int(t["onset"][i]), apex=int(t["apex"][i]), offset=int(t["offset"][i]),
                   emotion=t["emotion"][i], label=None if t["label"][i] < 0 else int(t["label"][i]))
            for i in range(len(self))
        ]

    def writable(self, path: str) -> zarr.Array:
        """The array at ``path`` opened for writing, kept open for the next write (opening
        an array reads and parses its metadata: a cost per write of a running extraction)."""
        arr = self._writable.get(path)
        if arr is None:
            arr = self._writable[path] = self.group[path].with_config(_WRITE_CONFIG)
        return arr

    def _forget_writable(self, prefix: str) -> None:
        """Drop the open handles under ``prefix`` (their arrays are about to be recreated)."""
        for path in [p for p in self._writable if p.startswith(prefix)]:
            del self._writable[path]

    def set_status(self, index: int, status: str, error: str = "") -> None:
        fault("status:before")
        self.writable("samples/error")[index] = error
        self.writable("samples/status")[index] = status
        fault("status:after")

    def set_statuses(self, indices: Sequence[int], status: str,
                     errors: Sequence[str] | None = None) -> None:
        """``set_status`` for many samples in one write a column."""
        if not len(indices):
            return
        idx = np.asarray(indices, dtype=np.int64)
        err = [""] * len(idx) if errors is None else list(errors)
        fault("statuses:before")
        self.writable("samples/error").set_orthogonal_selection(
            (idx,), np.asarray(err, dtype=object))
        self.writable("samples/status").set_orthogonal_selection(
            (idx,), np.asarray([status] * len(idx), dtype=object))

    # -- frames --------------------------------------------------------------------------
    def has_frames(self, key: str) -> bool:
        try:
            return bool(self.group[f"frames/{key}"].attrs.get("done", False))
        except KeyError:
            return False

    def write_frames(self, key: str, frames: np.ndarray, landmarks: np.ndarray) -> None:
        """Write a clip's aligned frames (T, S, S) uint8 and onset landmarks (68, 2)."""
        fault("frames:before")
        grp = self.group.require_group(f"frames/{key}")
        t, h, w = frames.shape
        grp.create_array("frames", data=np.asarray(frames, np.uint8), chunks=(min(t, 16), h, w),
                         overwrite=True, config=_WRITE_CONFIG)
        fault("frames:landmarks")
        grp.create_array("landmarks", data=np.asarray(landmarks, np.float32), overwrite=True,
                         config=_WRITE_CONFIG)
        fault("frames:done")
        grp.attrs["done"] = True

    def read_landmarks(self, key: str) -> np.ndarray:
        """A clip's (68, 2) onset landmarks in aligned coordinates, without its frames."""
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        return self.group[f"frames/{key}/landmarks"][:]

    def clip(self, key: str) -> ClipReader:
        """A clip's aligned frames, read lazily one chunk at a time: ``len(clip)`` and
        ``clip[t]`` (H, W) uint8, for readers that need a few frames of many clips."""
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        return ClipReader(self.group[f"frames/{key}/frames"])

    def read_frames(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        grp = self.group[f"frames/{key}"]
        return grp["frames"][:], grp["landmarks"][:]

    # -- variants ------------------------------------------------------------------------
    def variants(self) -> list[str]:
        return sorted(name for name, _ in self.group["features"].groups())

    def pick_variant(self, name: str | None) -> str:
        """``name``, or (``None``) the store's only variant, else ``gt``; else a clear error."""
        if name is not None:
            return name
        names = self.variants()
        if len(names) == 1:
            return names[0]
        if "gt" in names:
            return "gt"
        raise StoreError(f"{self.path} holds the variants {', '.join(names) or 'none'}; say "
                         "which one with --variant")

    def variant(self, name: str) -> Variant:
        try:
            return Variant(self.group[f"features/{name}"], name, self)
        except KeyError:
            known = ", ".join(self.variants()) or "none"
            raise StoreError(
                f"{self.path} has no feature variant {name!r} (it has: {known})"
            ) from None

    def require_variant(
        self, name: str, attrs: dict[str, Any], size: int, maps: Iterable[str] = tuple(MAPS)
    ) -> Variant:
        """Open variant ``name``, creating it if new; refuse one made with other ``attrs``."""
        # A variant gets its attributes last: one without them is a creation that a killed
        # run left unfinished (nothing of it is done), and is made again below.
        if name in self.variants() and "settings" in self.variant(name).attrs:
            var = self.variant(name)
            old = var.attrs.get("settings", {})
            if fingerprint(old) != fingerprint(attrs):
                diffs = "; ".join(_config_diff(old, attrs))
                raise StoreError(
                    f"{self.path}: variant {name!r} was made with other settings ({diffs}); "
                    "give this one another name"
                )
            return var
        n = len(self)
        self._forget_writable(f"features/{name}/")
        grp = self.group.require_group(f"features/{name}")
        grp.create_array("keyframes", shape=(n, 3), dtype="int32", chunks=(1, 3), fill_value=-1,
                         overwrite=True)
        for m in maps:
            c, dtype = MAPS[m]
            grp.create_array(m, shape=(n, c, size, size), dtype=dtype, chunks=(1, c, size, size),
                             overwrite=True)
        grp.create_array("done", shape=(n,), dtype="bool", chunks=(1,), fill_value=False,
                         overwrite=True)
        fault("variant:create")
        grp.create_array("error", shape=(n,), dtype=str, chunks=(1,), overwrite=True)
        grp.attrs.update({"settings": attrs, "fingerprint": fingerprint(attrs), "size": size,
                          "maps": list(maps)})
        return Variant(grp, name, self)

    def require_imported(
        self, name: str, shapes: dict[str, tuple[tuple[int, ...], str]],
        settings: dict[str, Any], *, source: str = "",
    ) -> Variant:
        """Open imported variant ``name`` (arrays ``{name: (shape per sample, dtype)}``),
        creating it if new; refuse one imported with other ``settings``.

        Rows are chunked one sample a chunk and counted by the ``done`` flags, as in an
        extracted variant, so an import resumes and a failed sample can be added later.
        """
        if name in self.variants() and "fingerprint" in self.variant(name).attrs:
            var = self.variant(name)
            old = var.attrs.get("settings", {})
            if fingerprint(old) != fingerprint(settings) or sorted(shapes) != var.maps:
                diffs = "; ".join(_config_diff(old, settings)) or f"arrays {var.maps}"
                raise StoreError(
                    f"{self.path}: variant {name!r} was imported with other settings "
                    f"({diffs}); import into another --store"
                )
            var.group.attrs["source"] = source
            return var
        n = len(self)
        self._forget_writable(f"features/{name}/")
        grp = self.group.require_group(f"features/{name}")
        for key, (shape, dtype) in shapes.items():
            grp.create_array(key, shape=(n, *shape), dtype=dtype, chunks=(1, *shape),
                             overwrite=True)
        grp.create_array("done", shape=(n,), dtype="bool", chunks=(1,), fill_value=False,
                         overwrite=True)
        fault("imported:create")
        grp.create_array("error", shape=(n,), dtype=str, chunks=(1,), overwrite=True)
        size = next((s[-1] for s, _ in shapes.values() if len(s) == 3), 0)
        # The fingerprint last: a variant without it is an interrupted creation.
        grp.attrs.update({**settings, "settings": settings, "maps": sorted(shapes),
                          "size": int(size), "source": source,
                          "fingerprint": fingerprint(settings)})
        return Variant(grp, name, self)


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

    def __init__(self, group: zarr.Group, name: str, store: FeatureStore):
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


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name, kept as surrogates
        return False
    return True


def _check_local_target(path: Path) -> None:
    """Refuse to write a store over a file, or into a folder that holds other things."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a store; choose another --store (a new folder "
                         "ending in .zarr)")
    if (path / "zarr.json").is_file():
        _exists(str(path))  # refuses a Zarr group of another tool before we lock it
    elif path.is_dir():
        # What a killed creation may leave: our lock file, zarr's temporary files.
        other = sorted(c.name for c in path.iterdir()
                       if c.name != ".mefeat-writer.lock" and not c.name.endswith(".partial"))
        if other:
            raise StoreError(
                f"{path} is a folder with other files ({', '.join(other[:3])}...) and not a "
                "mefeat store; choose another --store (a new folder ending in .zarr)"
            )


def _exists(path: str) -> bool:
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
    if group.attrs.asdict() or not children <= {"samples", "frames", "features"}:
        raise StoreError(
            f"{path}: a Zarr group that is not a mefeat store; choose another --store path"
        )
    return False
