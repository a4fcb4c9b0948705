"""Long-video readers for the MEGC spotting task: whole recordings and their expressions.

A spotting dataset is a set of long videos (a subject watching one stimulus) and, for each,
its annotated expression intervals, micro and macro. Each dataset has a parser of its
annotation sheet alone (no frames needed) and a reader class that joins the sheet with the
frame folders; the class docstrings draw the layouts:

============  ======================  ===============================  =====
name          reader                  parser                           fps
============  ======================  ===============================  =====
casme-sq      :class:`CasmeSq`        :func:`parse_casme_sq`           30
samm-long     :class:`SammLong`       :func:`parse_samm_long`          200
casme3a-long  :class:`Casme3ALong`    :func:`parse_casme3a_long`       30
============  ======================  ===============================  =====

A reader returns a :class:`LongVideoSet` ``(videos, expressions, dropped)``:

- every video folder with frames is a :class:`LongVideo`, with or without expressions (a
  video without any still counts for false positives in the challenge's scoring);
- every sheet row that could be placed is a :class:`LongExpression` whose onset, apex and
  offset are **0-based positions in the video's frame list** (the files sorted by the
  integer frame number in their names), with the sheet's own frame numbers beside them;
  an expression whose onset or offset frame is not a file of its video (before the first,
  beyond the last, lost inside) or whose onset is after its offset is left out;
- every row or video left out is a :class:`~mefeat.datasets._sample.Dropped` with the
  reason and the source (``<file> row N``, or the video's folder).

Every sheet value a reader changes (a fraction rounded, CAS(ME)^2's offset 0 or apex 0,
an apex outside its interval or not a file, which becomes ``None``) is listed, a sentence
each, in ``LongExpression.repairs``; nothing is changed silently.

The datasets layer sits below ``mefeat.keyframes``, so it does not build the challenge's
intervals itself; a caller does::

    from mefeat.datasets.longvideo import SammLong
    from mefeat.keyframes.challenge import Expression

    videos, expressions, dropped = SammLong("/data/SAMM_LV").read()
    truth = [Expression(e.video, e.onset, e.offset, e.kind, e.emotion) for e in expressions]

Sources: the MEGC 2020 spotting baseline of the organisers (HeyingGithub/
Baseline-project-for-MEGC2020_spotting @7d186cf, ``MEdatabase_processed/dataset_new/``
``CASME_2.py`` and ``SAMM_MEGC.py``, cited by line in the parsers) and SoftNet, the MEGC
2022 baseline (genbing99/SoftNet-SpotME, ``load_label.py``).
"""

from __future__ import annotations

import os
from typing import Any

from mefeat.datasets.longvideo._common import (
    LongExpression,
    LongRow,
    LongVideo,
    LongVideoReader,
    LongVideoSet,
)
from mefeat.datasets.longvideo.casme3a_long import Casme3ALong, parse_casme3a_long
from mefeat.datasets.longvideo.casme_sq import CasmeSq, parse_casme_sq
from mefeat.datasets.longvideo.samm_long import SammLong, parse_samm_long
from mefeat.errors import MefeatError

LONG_READERS: dict[str, type[LongVideoReader]] = {
    "casme-sq": CasmeSq,
    "casme3a-long": Casme3ALong,
    "samm-long": SammLong,
}


def read_long_videos(
    name: str,
    root: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    **kw: Any,
) -> LongVideoSet:
    """Read long-video dataset ``name`` under ``root``: ``LongVideoSet(videos, expressions,
    dropped)``. ``kw`` go to the reader class (``frames=`` for ``casme3a-long``)."""
    try:
        cls = LONG_READERS[name]
    except KeyError:
        raise MefeatError(f"unknown long-video dataset {name!r}; choose one of "
                          f"{', '.join(sorted(LONG_READERS))}") from None
    return cls(root, annotations=annotations, **kw).read()


__all__ = [
    "LONG_READERS",
    "Casme3ALong",
    "CasmeSq",
    "LongExpression",
    "LongRow",
    "LongVideo",
    "LongVideoReader",
    "LongVideoSet",
    "SammLong",
    "parse_casme3a_long",
    "parse_casme_sq",
    "parse_samm_long",
    "read_long_videos",
]
