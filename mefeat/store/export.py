"""Export a feature store to HDF5: the same groups, arrays, shapes and attributes."""

from __future__ import annotations

import json
import os
import warnings

import h5py
import numpy as np
import zarr

from mefeat.store.feature_store import FeatureStore


def _copy_attrs(src: zarr.Group | zarr.Array, dst: h5py.Group | h5py.Dataset) -> None:
    for k, v in src.attrs.asdict().items():
        dst.attrs[k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)


def to_hdf5(store: str | os.PathLike, out: str | os.PathLike) -> None:
    """Write every array of ``store`` to the HDF5 file ``out`` (overwritten)."""
    fs = FeatureStore.open(store)
    with h5py.File(out, "w") as h5:
        _copy_attrs(fs.group, h5)

        def visit(src: zarr.Group, dst: h5py.Group) -> None:
            for name, child in src.members():
                if isinstance(child, zarr.Group):
                    sub = dst.create_group(name)
                    _copy_attrs(child, sub)
                    visit(child, sub)
                else:
                    data = child[:]
                    if data.dtype.kind in "OUT":
                        ds = dst.create_dataset(name, data=np.asarray(data, dtype=object),
                                                dtype=h5py.string_dtype())
                    else:
                        ds = dst.create_dataset(name, data=data, compression="gzip",
                                                chunks=child.chunks)
                    _copy_attrs(child, ds)

        with warnings.catch_warnings():
            # the writer's lock file sits in the store folder; zarr warns about any file
            # that is not part of the hierarchy when it lists the root's members
            warnings.filterwarnings("ignore", message=r"Object at \.mefeat-writer\.lock",
                                    category=UserWarning)
            visit(fs.group, h5)
