"""Model inputs from a store, in three lines::

    from mefeat.views.data import load_view
    data = load_view("features.zarr", variant="gt", view="ststnet")
    dataset, folds = data.torch_dataset(), data.folds()

One bulk read per array; the folds index into the arrays in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mefeat.errors import StoreError
from mefeat.store import FeatureStore
from mefeat.views import build_inputs, get_view
from mefeat.views.jitter import JitteredFrames, frame_bank


@dataclass
class ViewData:
    """A view of a variant: inputs (one array per model input), labels and sample ids."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    keys: np.ndarray
    subjects: np.ndarray  # "dataset/subject", the LOSO unit
    datasets: np.ndarray
    classes: tuple[str, ...]
    variant: str
    view: str
    official_format: str | None = None
    options: dict[str, str] | None = None
    jitter: JitteredFrames | None = None  # training-time key-frame draws (load_view(jitter=))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Classes of the store's label scheme (else the largest label + 1)."""
        return len(self.classes) or (int(self.labels.max()) + 1 if len(self.labels) else 0)

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


def load_view(store: str | os.PathLike, *, variant: str | None = None, view: str,
              options: dict[str, str] | None = None, jitter=None) -> ViewData:
    """Read the done samples of ``variant`` and build ``view``'s inputs for them.

    ``variant``: default the store's only variant, else ``gt``. ``options``: the view's named
    choices (``View.options``). ``jitter``: a recipe's
    :class:`~mefeat.models.recipe.KeyframeJitter`; the result then also holds, under
    ``jitter``, the frames its training draws may take (views with a ``jitter`` function).
    """
    fs = FeatureStore.open(store)
    variant = fs.pick_variant(variant)
    var = fs.variant(variant)
    v = get_view(view)
    opts = v.resolve_options(options)
    fmt = var.attrs.get("format")
    table = fs.table()
    if fmt:
        if v.official is None:
            raise StoreError(
                f"{store}: variant {variant!r} holds official {fmt} images, which view "
                f"{view!r} cannot use; extract flows with `mefeat extract` for this model"
            )
        names = list(v.official_arrays) + (["points"] if var.has("points") else [])
        idx, arrays = var.read(names)
        if jitter is not None:
            raise StoreError(f"{store}: variant {variant!r} holds official images, no aligned "
                             "frames to draw jittered key frames from")
        inputs = v.official(arrays, arrays.get("points"), **opts)
    else:
        idx, arrays = var.read(v.arrays)
        keys = [str(k) for k in table["key"][idx]]
        landmarks = np.stack([fs.read_landmarks(k) for k in keys]) \
            if len(idx) and v.landmarks else np.zeros((len(idx), 68, 2), np.float32)
        if v.frames:  # a few frames of each clip: read chunk by chunk
            arrays["clips"] = lambda i: fs.clip(keys[i])
        inputs = build_inputs(v, arrays, landmarks, size=int(var.attrs["size"]),
                              frame_size=int(fs.config.get("align", {}).get(
                                  "size", var.attrs["size"])), options=opts)
        if jitter is not None:
            if v.jitter is None:
                raise StoreError(f"view {view!r} cannot jitter key frames (it has no jitter "
                                 "function)")
            kf = arrays["keyframes"] if "keyframes" in arrays else var.read(["keyframes"])[1][
                "keyframes"]
            bank = frame_bank(lambda i: fs.clip(keys[i]), kf, jitter.ranges,
                              size=v.size, keys=v.jitter_keys, to_inputs=v.jitter)
    labels = table["label"][idx].astype(np.int64)
    if (labels < 0).any():
        unlabeled = [str(k) for k in table["key"][idx][labels < 0][:3]]
        raise StoreError(
            f"{store}: samples without a class label (e.g. {unlabeled}); extract with "
            "--labels SCHEME (e.g. megc2019) to train"
        )
    datasets = table["dataset"][idx]
    subjects = np.array([f"{d}/{s}" for d, s in zip(datasets, table["subject"][idx],
                                                     strict=True)], dtype=object)
    classes = tuple(fs.attrs.get("classes", []))
    return ViewData(inputs=tuple(np.ascontiguousarray(x, dtype=np.float32) for x in inputs),
                    labels=labels, keys=table["key"][idx], subjects=subjects,
                    datasets=datasets, classes=classes, variant=variant, view=view,
                    official_format=fmt, options=opts,
                    jitter=bank if jitter is not None and not fmt else None)
