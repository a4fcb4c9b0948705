"""What made an output: versions of mefeat and of the libraries whose numbers it depends on."""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

from mefeat import __version__

_PACKAGES = ("numpy", "opencv-contrib-python-headless", "dlib-bin", "zarr", "torch")


def versions() -> dict[str, str]:
    """mefeat, Python and library versions, for the attributes of every output."""
    out = {"mefeat": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_sha256(path: str | os.PathLike | None) -> str | None:
    """The SHA-256 of an input file (an annotation sheet, a CSV), for a store's config."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
