"""A model's inputs read from a store: one bulk read per array, the folds index into the
arrays in memory. ``mefeat.load_view(store, "ststnet")`` names the model whose view to read;
here the :class:`~mefeat.views.View` itself is given (:func:`read_view`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mefeat.errors import StoreError
from mefeat.store import FeatureStore, fingerprint
from mefeat.views import View, build_inputs
from mefeat.views.jitter import JitteredFrames, frame_bank


@dataclass
class ViewData:
    """A view of a variant: inputs (one array per model input), labels and sample ids.

    ``source`` says where the data came from (store, variant, their fingerprints and the
    fingerprint of the sample keys: what a run folder compares before it resumes), and
    ``warnings`` what a user must know about it (failed samples left out, a view that fell
    back to fixed points).
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    keys: np.ndarray
    subjects: np.ndarray  # "dataset/subject", the LOSO unit
    datasets: np.ndarray
    classes: tuple[str, ...]
    variant: str | None = None
    view: str | None = None
    official_format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    jitter: JitteredFrames | None = None  # training-time key-frame draws (jitter=)
    source: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Classes of the store's label scheme (else the largest label + 1)."""
        return len(self.classes) or (int(self.labels.max()) + 1 if len(self.labels) else 0)

    @classmethod
    def from_arrays(cls, inputs, labels, subjects, *, classes: tuple[str, ...] = (),
                    keys=None) -> ViewData:
        """Data given as arrays: one array (N, ...) per model input (or one array), labels
        (N,), subjects (N,) with the dataset before a ``/`` (``"casme2/sub01"``)."""
        xs = (inputs,) if hasattr(inputs, "shape") else tuple(inputs)
        y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.int64)
        subj = np.asarray([str(s) for s in subjects], dtype=object)
        n = len(y)
        keys = np.asarray([str(k) for k in keys], dtype=object) if keys is not None else \
            np.asarray([f"{s}/{i}" for i, s in enumerate(subj)], dtype=object)
        datasets = np.asarray([s.split("/", 1)[0] if "/" in s else "" for s in subj],
                              dtype=object)
        return cls(inputs=xs, labels=y, keys=keys, subjects=subj, datasets=datasets,
                   classes=tuple(classes), source={"samples": fingerprint(keys.tolist()),
                                                   "n_samples": n})

    def subset(self, keep: np.ndarray) -> ViewData:
        """The samples ``keep`` (a mask or indices) only."""
        return replace(self, inputs=tuple(x[keep] for x in self.inputs),
                       labels=self.labels[keep], keys=self.keys[keep],
                       subjects=self.subjects[keep], datasets=self.datasets[keep],
                       jitter=None if self.jitter is None else self.jitter.subset(keep))

    def torch_dataset(self):
        """A ``torch.utils.data.TensorDataset`` of (inputs..., label)."""
        import torch
        from torch.utils.data import TensorDataset

        return TensorDataset(*(torch.from_numpy(x) for x in self.inputs),
                             torch.from_numpy(self.labels.astype(np.int64)))

    def folds(self):
        """Leave-one-subject-out folds: (subject, train indices, test indices)."""
        from mefeat.datasets.loso import loso_folds

        return loso_folds(self.subjects)


def read_view(store: str | os.PathLike, view: View, *, variant: str | None = None,
              options: dict[str, str] | None = None, jitter=None) -> ViewData:
    """Read the done samples of ``variant`` and build ``view``'s inputs for them.

    ``variant``: default the store's only variant, else ``gt``. ``options``: the view's named
    choices (``View.options``). ``jitter``: a recipe's
    :class:`~mefeat.recipes.KeyframeJitter`; the result then also holds, under ``jitter``,
    the frames its training draws may take (views with a ``jitter`` function).
    """
    fs = FeatureStore.open(store)
    variant = fs.pick_variant(variant)
    var = fs.variant(variant)
    opts = view.resolve_options(options)
    fmt = var.attrs.get("format")
    table = fs.table()
    warnings: list[str] = []
    bank = None
    if fmt:
        if view.official is None:
            raise StoreError(
                f"{store}: variant {variant!r} holds official {fmt} images, which view "
                f"{view.name!r} cannot use; extract flows with `mefeat extract` for this model"
            )
        if jitter is not None:
            raise StoreError(f"{store}: variant {variant!r} holds official images, no aligned "
                             "frames to draw jittered key frames from")
        has_points = var.has("points")
        names = list(view.official_arrays) + (["points"] if has_points else [])
        idx, arrays = var.read(names)
        if view.official_points and not has_points:
            warnings.append(
                f"variant {variant!r} has no per-sample points (imported without --points): "
                f"view {view.name!r} crops every sample at fixed fallback points")
        inputs = view.official(arrays, arrays.get("points"), **opts)
    else:
        idx, arrays = var.read(view.arrays)
        keys = [str(k) for k in table["key"][idx]]
        landmarks = np.stack([fs.read_landmarks(k) for k in keys]) \
            if len(idx) and view.landmarks else np.zeros((len(idx), 68, 2), np.float32)
        if view.frames:  # a few frames of each clip: read chunk by chunk
            arrays["clips"] = lambda i: _clip(fs, keys[i], view.colour)
            if view.colour and not fs.config.get("colour"):
                warnings.append(
                    f"{store} keeps no colour frames (extracted with --no-colour, or before "
                    f"mefeat kept them): view {view.name!r} repeats the grayscale frames "
                    "over three channels where the official code reads colour frames; "
                    "extract again from the dataset folder into a new store")
        inputs = build_inputs(view, arrays, landmarks, size=int(var.attrs["size"]),
                              frame_size=int(fs.config.get("align", {}).get(
                                  "size", var.attrs["size"])), options=opts)
        if jitter is not None:
            bank = _jitter_bank(fs, view, var, arrays, keys, jitter)
    labels = table["label"][idx].astype(np.int64)
    if (labels < 0).any():
        unlabeled = [str(k) for k in table["key"][idx][labels < 0][:3]]
        raise StoreError(
            f"{store}: samples without a class label (e.g. {unlabeled}); extract with "
            "--labels SCHEME (e.g. megc2019) to train"
        )
    not_done = len(table["key"]) - len(idx)
    if not_done:
        warnings.append(f"{not_done} of {len(table['key'])} samples of the store have no "
                        f"features in variant {variant!r} (failed or not extracted; `mefeat "
                        f"inspect {store}` lists them) and are left out")
    datasets = table["dataset"][idx]
    subjects = np.array([f"{d}/{s}" for d, s in zip(datasets, table["subject"][idx],
                                                     strict=True)], dtype=object)
    keys_all = table["key"][idx]
    source = {"store": str(store), "variant": variant,
              "store_fingerprint": fs.attrs.get("fingerprint"),
              "variant_fingerprint": var.attrs.get("fingerprint"),
              "samples": fingerprint([str(k) for k in keys_all]), "n_samples": len(idx)}
    return ViewData(inputs=tuple(np.ascontiguousarray(x, dtype=np.float32) for x in inputs),
                    labels=labels, keys=keys_all, subjects=subjects, datasets=datasets,
                    classes=tuple(fs.attrs.get("classes", [])), variant=variant,
                    view=view.name, official_format=fmt, options=opts, jitter=bank,
                    source=source, warnings=tuple(warnings))


def _jitter_bank(fs, view: View, var, arrays, keys, jitter) -> JitteredFrames:
    if view.jitter is None:
        raise StoreError(f"view {view.name!r} cannot jitter key frames (it has no jitter "
                         "function)")
    kf = arrays["keyframes"] if "keyframes" in arrays else var.read(["keyframes"])[1][
        "keyframes"]
    return frame_bank(lambda i: _clip(fs, keys[i], view.colour), kf, jitter.ranges,
                      size=view.size, keys=view.jitter_keys, to_inputs=view.jitter,
                      colour=view.colour)


def _clip(fs, key: str, colour: bool):
    """A clip's aligned frames: its colour ones where asked and kept, else grayscale."""
    return fs.clip(key, colour=colour and fs.has_colour(key))
