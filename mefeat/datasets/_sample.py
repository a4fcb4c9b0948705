"""The record every dataset reader returns: one clip, its frames and its key frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One micro-expression clip.

    ``key`` is ``dataset/subject/clip`` and is unique and stable across runs. Key frames
    are given twice: as the dataset's own frame numbers (``onset_frame``...) and as
    indices into ``frames`` (``onset``...), which is what the pipeline uses.
    ``apex_frame`` is ``None`` only before a reader has chosen one (see each reader).
    """

    dataset: str
    subject: str
    clip: str
    frames: tuple[Path, ...]
    onset_frame: int
    apex_frame: int
    offset_frame: int
    onset: int
    apex: int
    offset: int
    emotion: str
    action_units: tuple[str, ...] = ()
    label: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.clip}"

    @property
    def n_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Dropped:
    """A spreadsheet row or clip that a reader or label scheme left out, and why."""

    dataset: str
    subject: str
    clip: str
    reason: str
    source: str = ""

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.dataset}/{self.subject}/{self.clip}: {self.reason}{where}"
