"""Training-time key-frame jitter of a recipe (MMNet): the onset and apex a training clip
takes, drawn near the annotated ones every epoch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .parts import need


@dataclass(frozen=True)
class KeyframeJitter:
    """Training clips take their onset and apex near the annotated ones (MMNet).

    With ``d1 = apex - onset`` and ``d2 = offset - apex`` (annotated indices), every
    epoch draws, uniformly and inclusively (Python's ``random.randint``)::

        onset' in [onset, onset + int(onset_after * d1 / divisor)]
        apex'  in [apex - int(apex_before * d1 / divisor), apex + int(apex_after * d2 / divisor)]

    The fractions are kept in the official code's form (``int(0.2*d/4)``, not
    ``int(0.05*d)``), since the two can round differently. Only views that read the aligned
    frames (``View.frames``) can be jittered; evaluation always uses the annotated frames.
    """

    onset_after: float
    apex_before: float
    apex_after: float
    divisor: float = 1.0

    def __post_init__(self) -> None:
        need(min(self.onset_after, self.apex_before, self.apex_after) >= 0
             and self.divisor > 0, f"KeyframeJitter{dataclasses.astuple(self)}")

    def ranges(self, onset: int, apex: int, offset: int) -> tuple[range, range]:
        """The onset and apex indices a training draw may take."""
        d1, d2 = apex - onset, offset - apex
        on_hi = onset + int(self.onset_after * d1 / self.divisor)
        ap_lo = apex - int(self.apex_before * d1 / self.divisor)
        ap_hi = apex + int(self.apex_after * d2 / self.divisor)
        return range(onset, on_hi + 1), range(ap_lo, ap_hi + 1)
