"""Dataset readers and label schemes.

One reader class per dataset, registered by name: ``casme2``, ``samm``, ``smic`` (the
original SMIC-HS clip folders), ``smic-e`` (SMIC-E HS with its annotation sheet),
``mmew``, ``casme3a`` (CAS(ME)^3 part A) and ``manifest`` (a plain CSV). Each class
docstring draws the folder tree it expects. A reader returns :class:`ReadResult`
``(samples, dropped)``: every annotation row it left out is in ``dropped`` with why.
Each dataset module also has ``parse_annotations(path)``, which reads the annotation
file alone (no frames needed).

Long videos for the MEGC spotting task (``casme-sq``, ``samm-long``, ``casme3a-long``) have
their own readers in :mod:`mefeat.datasets.longvideo`, returning :class:`LongVideoSet`
``(videos, expressions, dropped)``: ``read_long_videos("samm-long", root)``.

Label schemes (:mod:`mefeat.datasets.labels`) turn raw emotions into class ids:
``get_scheme("megc2019").apply(samples) -> (labelled, dropped)``.

Example::

    from mefeat.datasets import read_dataset, get_scheme
    samples, dropped = read_dataset("casme2", "/data/CASME2/CASME2_RAW_selected")
    samples, more = get_scheme("megc2019").apply(samples)
"""

from __future__ import annotations

import os
from typing import Any

from mefeat.datasets._base import Reader, ReadResult, Row
from mefeat.datasets._sample import Dropped, Sample
from mefeat.datasets.casme2 import Casme2
from mefeat.datasets.casme3 import Casme3A
from mefeat.datasets.labels import SCHEMES, LabelScheme, get_scheme, list_schemes
from mefeat.datasets.longvideo import (
    LONG_READERS,
    Casme3ALong,
    CasmeSq,
    LongExpression,
    LongVideo,
    LongVideoSet,
    SammLong,
    read_long_videos,
)
from mefeat.datasets.manifest import Manifest
from mefeat.datasets.mmew import Mmew
from mefeat.datasets.samm import Samm
from mefeat.datasets.smic import Smic, SmicE
from mefeat.errors import MefeatError

READERS: dict[str, type[Reader]] = {
    "casme2": Casme2,
    "casme3a": Casme3A,
    "manifest": Manifest,
    "mmew": Mmew,
    "samm": Samm,
    "smic": Smic,
    "smic-e": SmicE,
}


def list_readers() -> list[str]:
    return sorted(READERS)


def get_reader(name: str) -> type[Reader]:
    """The reader class registered as ``name``."""
    try:
        return READERS[name]
    except KeyError:
        raise MefeatError(
            f"unknown dataset {name!r}; choose one of {', '.join(list_readers())}"
        ) from None


def read_dataset(
    name: str,
    root: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    **kw: Any,
) -> ReadResult:
    """Read dataset ``name`` under ``root``: ``ReadResult(samples, dropped)``.

    ``kw`` go to the reader class (e.g. ``frames="cropped"`` for CASME II).
    """
    return get_reader(name)(root, annotations=annotations, **kw).read()


__all__ = [
    "LONG_READERS",
    "READERS",
    "SCHEMES",
    "Casme2",
    "Casme3A",
    "Casme3ALong",
    "CasmeSq",
    "Dropped",
    "LabelScheme",
    "LongExpression",
    "LongVideo",
    "LongVideoSet",
    "Manifest",
    "Mmew",
    "ReadResult",
    "Reader",
    "Row",
    "Sample",
    "Samm",
    "SammLong",
    "Smic",
    "SmicE",
    "get_reader",
    "get_scheme",
    "list_readers",
    "list_schemes",
    "read_dataset",
    "read_long_videos",
]
