"""Long videos in a store: the ``long/`` group, one subgroup per video, written in chunks.

::

    STORE.zarr/
      long/<dataset>/<subject>/<video>/    attrs: meta (dataset, subject, video, fps,
                                           frame numbers, expressions), config and its
                                           fingerprint, anchors' repairs, ROI boxes
        anchors      (A,) int64            frames the face was sought on
        transforms   (A, 2, 3) float64     the transform in use from each on
        frames       (T, S, S) uint8       aligned grayscale frames, chunked (C, S, S)
        roi_k<K>     (T, R, R, 3) float16  the ROI image of the flow from t to t+K
                                           (zeros where t+K is past the end), chunked (C, ..)
        chunk_done   (ceil(T/C),) bool     one chunk per element: set after its arrays

A chunk of C frames is written whole (its frames, then every ``roi_k*``), then its
``chunk_done`` element: a writer killed at any point leaves chunks that are either marked
done and complete or unmarked and written again on resume. A video's group is created
with its config; resuming with another config, or other frame files, is refused with what
differs (the expressions, which no array depends on, are updated).
Readers read any span of frames; :meth:`LongVideo.complete` says whether all chunks are
done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from mefeat import __version__
from mefeat.errors import StoreError
from mefeat.faults import fault

from .layout import (
    SCHEMA_VERSION,
    WRITE_CONFIG,
    config_diff,
    fingerprint,
    is_store,
)
from .lock import HoldsLock, WriterLock, lock_local

GROUP = "long"


class LongVideo:
    """One video's group: its metadata and chunked arrays (see the module docstring)."""

    def __init__(self, group: zarr.Group, key: str):
        self.group = group
        self.key = key

    @property
    def meta(self) -> dict[str, Any]:
        return self.group.attrs["meta"]

    @property
    def config(self) -> dict[str, Any]:
        return self.group.attrs["config"]

    @property
    def n_frames(self) -> int:
        return int(self.group["frames"].shape[0])

    @property
    def chunk(self) -> int:
        return int(self.group["frames"].chunks[0])

    @property
    def ks(self) -> list[int]:
        return sorted(int(name[len("roi_k"):]) for name in self.group.array_keys()
                      if name.startswith("roi_k"))

    def chunks_done(self) -> np.ndarray:
        return self.group["chunk_done"][:]

    def complete(self) -> bool:
        return "transforms" in self.group and bool(self.chunks_done().all())

    def has_anchors(self) -> bool:
        return "transforms" in self.group

    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """Anchor frames (A,) and their transforms (A, 2, 3)."""
        return self.group["anchors"][:], self.group["transforms"][:]

    def _check_done(self, start: int, stop: int) -> None:
        c = self.chunk
        done = self.chunks_done()[start // c:(max(stop, start + 1) - 1) // c + 1]
        if not done.all():
            raise StoreError(f"long video {self.key}: frames {start}-{stop - 1} are not all "
                             "extracted yet; run `mefeat extract-long` again to finish it")

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Aligned frames ``start:stop`` (T', S, S) uint8."""
        stop = self.n_frames if stop is None else stop
        self._check_done(start, stop)
        return self.group["frames"][start:stop]

    def roi(self, k: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """ROI images of the flow t -> t+k for t in ``start:stop`` (T', R, R, 3) float32."""
        if f"roi_k{k}" not in self.group:
            raise StoreError(f"long video {self.key} has no flow for k={k} (it has "
                             f"{self.ks}); extract it with --k {k}")
        stop = self.n_frames if stop is None else stop
        self._check_done(start, stop)
        return self.group[f"roi_k{k}"][start:stop].astype(np.float32)

    # -- writing ------------------------------------------------------------------------
    def write_anchors(self, anchors: np.ndarray, transforms: np.ndarray,
                      info: dict[str, Any]) -> None:
        """The schedule's anchors and transforms, and what goes with them (``info``:
        repairs, ROI boxes) into the attributes; transforms last (they mark it done)."""
        self.group.attrs.update(info)
        self.group.create_array("anchors", data=np.asarray(anchors, np.int64), overwrite=True)
        fault("long:anchors")
        self.group.create_array("transforms", data=np.asarray(transforms, np.float64),
                                overwrite=True)

    def write_chunk(self, index: int, frames: np.ndarray, rois: dict[int, np.ndarray]) -> None:
        """Chunk ``index``: its aligned frames and ROI images, then its done mark."""
        start = index * self.chunk
        stop = start + len(frames)
        if stop != min(start + self.chunk, self.n_frames):
            raise ValueError(f"chunk {index} of {self.key}: {len(frames)} frames do not fill it")
        self.group["frames"][start:stop] = frames
        fault("long:chunk:frames")
        for k, roi in rois.items():
            self.group[f"roi_k{k}"][start:stop] = roi.astype(np.float16)
        fault("long:chunk:rois")
        self.group["chunk_done"][index] = True


class LongVideoStore(HoldsLock):
    """The long videos of a store. ``open(path)`` to read, ``create_or_resume(path)`` to
    write (one writer at a time, as for the short clips)."""

    def __init__(self, root: zarr.Group, path: str, lock: WriterLock | None = None):
        self.root = root
        self.path = path
        self._lock = lock

    @classmethod
    def open(cls, path: str | os.PathLike) -> LongVideoStore:
        path = str(path)
        if not is_store(path):
            raise StoreError(f"{path}: no mefeat store here; make one with `mefeat extract-long`")
        root = zarr.open_group(path, mode="r")
        if GROUP not in root:
            raise StoreError(f"{path} holds no long videos; add them with `mefeat extract-long`")
        return cls(root, path)

    @classmethod
    def create_or_resume(cls, path: str | os.PathLike) -> LongVideoStore:
        """Open ``path`` for writing long videos: a store (with or without short clips), or
        a new one holding long videos only."""
        path = str(path)
        lock = lock_local(path)
        try:
            exists = is_store(path)
            root = zarr.open_group(path, mode="r+" if exists else "a")
            if exists and root.attrs["schema_version"] > SCHEMA_VERSION:
                raise StoreError(f"{path}: written by a newer mefeat; upgrade mefeat")
            root.require_group(GROUP)
            if not exists:
                root.attrs.update({"schema_version": SCHEMA_VERSION,
                                   "mefeat_version": __version__})
            return cls(root, path, lock)
        except BaseException:
            if lock:
                lock.release()
            raise

    def keys(self) -> list[str]:
        """Every video's key (``dataset/subject/video``), sorted."""
        out = []

        def walk(group: zarr.Group, prefix: str) -> None:
            if "meta" in group.attrs:
                out.append(prefix)
                return
            for name, child in group.groups():
                walk(child, f"{prefix}/{name}" if prefix else name)

        walk(self.root[GROUP], "")
        return sorted(out)

    def __iter__(self) -> Iterator[LongVideo]:
        return (self.video(k) for k in self.keys())

    def video(self, key: str) -> LongVideo:
        try:
            return LongVideo(self.root[f"{GROUP}/{key}"], key)
        except KeyError:
            raise StoreError(f"{self.path}: no long video {key!r}; it has "
                             f"{self.keys()[:5]}") from None

    def require_video(self, key: str, meta: dict[str, Any], config: dict[str, Any], *,
                      n_frames: int, size: int, roi_size: int, ks: list[int],
                      chunk: int) -> LongVideo:
        """The group of video ``key``, created empty for ``config`` or resumed when it was
        made with the same config (else ``StoreError`` naming what differs)."""
        path = f"{GROUP}/{key}"
        if path in self.root and "config" in self.root[path].attrs:
            group = self.root[path]
            old = group.attrs["config"]
            if fingerprint(old) != fingerprint(config):
                raise StoreError(f"{self.path}: long video {key} was extracted with other "
                                 f"settings ({'; '.join(config_diff(old, config))}); use "
                                 "another --store or its settings")
            stored = group.attrs["meta"]
            for field in ("files", "frame_numbers"):
                if stored.get(field) != meta.get(field):
                    raise StoreError(
                        f"{self.path}: long video {key} was extracted from other frames (its "
                        f"{field.replace('_', ' ')} differ: {len(stored.get(field) or [])} "
                        f"then, {len(meta.get(field) or [])} now); use another --store")
            group.attrs["meta"] = meta  # the annotation may have been corrected since
            return LongVideo(group, key)
        group = self.root.require_group(path)
        n_chunks = -(-n_frames // chunk)
        group.create_array("frames", shape=(n_frames, size, size), dtype="uint8",
                           chunks=(chunk, size, size), config=WRITE_CONFIG, overwrite=True)
        for k in ks:
            group.create_array(f"roi_k{k}", shape=(n_frames, roi_size, roi_size, 3),
                               dtype="float16", chunks=(chunk, roi_size, roi_size, 3),
                               config=WRITE_CONFIG, overwrite=True)
        group.create_array("chunk_done", shape=(n_chunks,), dtype=bool, chunks=(1,),
                           fill_value=False, overwrite=True)
        fault("long:create")
        # Config and meta last: a group without them is created again.
        group.attrs.update({"config": config, "meta": meta})
        return LongVideo(group, key)
