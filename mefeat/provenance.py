"""What made an output: versions of mefeat and of the libraries whose numbers it depends on."""

from __future__ import annotations

import platform
from importlib import metadata

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
