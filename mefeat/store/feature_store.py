"""FeatureStore and Variant: the only code that knows the store's layout."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import zarr

from mefeat import __version__
from mefeat.datasets._sample import Sample
from mefeat.errors import StoreError
from mefeat.faults import fault
from mefeat.frames import is_utf8
from mefeat.provenance import environment
from mefeat.store.layout import (
    MAPS,
    MUTABLE_COLUMNS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    WRITE_CONFIG,
    annotation_record,
    config_diff,
    fingerprint,
    is_store,
)
from mefeat.store.lock import HoldsLock, WriterLock, lock_local
from mefeat.store.variant import ClipReader, Variant


class FeatureStore(HoldsLock):
    """A feature store on disk (or any fsspec URL zarr accepts).

    Use ``FeatureStore.open(path)`` to read, ``FeatureStore.create_or_resume(...)`` to
    write. Readers see only samples whose ``status`` is ``done`` and variant rows whose
    ``done`` flag is set.
    """

    def __init__(self, group: zarr.Group, path: str, *, lock: WriterLock | None = None):
        self.group = group
        self.path = path
        self._lock = lock
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
            if not is_store(path):  # our own folders only: a creation cut short
                raise StoreError(f"{path}: a store whose creation was interrupted; run the "
                                 "command that makes it again")
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
        lock = lock_local(path)
        try:
            exists = is_store(path)
            if exists:
                store = cls.open(path, mode="r+")
                store._lock = lock
                if "config" not in store.attrs and samples is not None:
                    store._init(samples, config, provenance or {})  # long videos only so far
                    return store
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

    def _init(self, samples: Sequence[Sample], config: dict[str, Any], prov: dict) -> None:
        keys = [s.key for s in samples]
        for key in keys:  # each part becomes a folder of the store
            parts = key.split("/")
            if any(p in ("", ".", "..") or not p.isprintable() or not is_utf8(p) for p in parts):
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
        for name, dtype in SAMPLE_COLUMNS.items():
            chunks = (1,) if name in MUTABLE_COLUMNS else (max(n, 1),)
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
            diffs = "; ".join(config_diff(old, config))
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
        if name not in SAMPLE_COLUMNS:
            raise KeyError(f"no sample column {name!r}; columns: {list(SAMPLE_COLUMNS)}")
        if "samples" not in self.group:
            raise StoreError(f"{self.path} holds long videos only (`mefeat extract-long`); "
                             "extract short clips into it with `mefeat extract` first")
        values = self.group["samples"][name][:]
        if SAMPLE_COLUMNS[name] is str:  # zarr gives numpy's StringDType; plain str is simpler
            return np.array([str(v) for v in values], dtype=object)
        return values

    def table(self) -> dict[str, np.ndarray]:
        """All sample columns as numpy arrays (one bulk read each)."""
        return {name: self.column(name) for name in SAMPLE_COLUMNS}

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
            arr = self._writable[path] = self.group[path].with_config(WRITE_CONFIG)
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

    def write_frames(self, key: str, frames: np.ndarray, landmarks: np.ndarray, *,
                     colour: np.ndarray | None = None) -> None:
        """Write a clip's aligned frames (T, S, S) uint8, its aligned colour frames
        (T, S, S, 3) uint8 RGB where it has them, and its onset landmarks (68, 2)."""
        fault("frames:before")
        grp = self.group.require_group(f"frames/{key}")
        t, h, w = frames.shape
        grp.create_array("frames", data=np.asarray(frames, np.uint8), chunks=(min(t, 16), h, w),
                         overwrite=True, config=WRITE_CONFIG)
        if colour is not None:
            if colour.shape != (t, h, w, 3):
                raise ValueError(f"{key}: colour frames {colour.shape} do not match the "
                                 f"frames {frames.shape}")
            grp.create_array("colour", data=np.asarray(colour, np.uint8),
                             chunks=(min(t, 16), h, w, 3), overwrite=True, config=WRITE_CONFIG)
        fault("frames:landmarks")
        grp.create_array("landmarks", data=np.asarray(landmarks, np.float32), overwrite=True,
                         config=WRITE_CONFIG)
        fault("frames:done")
        grp.attrs["done"] = True

    def read_landmarks(self, key: str) -> np.ndarray:
        """A clip's (68, 2) onset landmarks in aligned coordinates, without its frames."""
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        return self.group[f"frames/{key}/landmarks"][:]

    def has_colour(self, key: str) -> bool:
        """Whether the store keeps the clip's aligned colour frames (a colour source,
        extracted with colour)."""
        return self.has_frames(key) and "colour" in self.group[f"frames/{key}"]

    def clip(self, key: str, *, colour: bool = False) -> ClipReader:
        """A clip's aligned frames, read lazily one chunk at a time: ``len(clip)`` and
        ``clip[t]`` (H, W) uint8, or with ``colour`` (H, W, 3) RGB (:meth:`has_colour`), for
        readers that need a few frames of many clips."""
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        grp = self.group[f"frames/{key}"]
        if colour and "colour" not in grp:
            raise StoreError(f"{self.path}: no colour frames for {key} (a grayscale source, or "
                             "a store extracted without colour)")
        return ClipReader(grp["colour" if colour else "frames"])

    def read_frames(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_frames(key):
            raise StoreError(f"{self.path}: no aligned frames for {key}; run `mefeat extract`")
        grp = self.group[f"frames/{key}"]
        return grp["frames"][:], grp["landmarks"][:]

    # -- variants ------------------------------------------------------------------------
    def variants(self) -> list[str]:
        """The variants whose creation finished (it writes the fingerprint last: a group
        without one is a creation that an interrupt or a kill cut short, which the next
        writer makes again and no reader sees)."""
        return sorted(name for name, grp in self.group["features"].groups()
                      if "fingerprint" in grp.attrs)

    def pick_variant(self, name: str | None) -> str:
        """``name``, or (``None``) the store's only variant, else ``gt``; else a clear error."""
        if name is not None:
            self.variant(name)  # an unknown (or empty) name is refused here, naming the known
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
            if not name or "/" in name or name not in self.variants():
                raise KeyError(name)
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
        if name in self.variants():
            var = self.variant(name)
            old = var.attrs.get("settings", {})
            if fingerprint(old) != fingerprint(attrs):
                diffs = "; ".join(config_diff(old, attrs))
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
                          "maps": list(maps), "environment": environment()})
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
        if name in self.variants():
            var = self.variant(name)
            old = var.attrs.get("settings", {})
            if fingerprint(old) != fingerprint(settings) or sorted(shapes) != var.maps:
                diffs = "; ".join(config_diff(old, settings)) or f"arrays {var.maps}"
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
                          "environment": environment(), "fingerprint": fingerprint(settings)})
        return Variant(grp, name, self)


