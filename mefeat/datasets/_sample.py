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

    A key frame that a rule chose, not the annotation, is flagged in ``extra`` under the
    rule's name, with a sentence saying what was done and why: ``apex_rule`` (no apex in
    the annotation: the middle frame, every reader), ``keyframe_rule`` (no onset/offset:
    the folder's first/last frame), ``apex_moved`` (CAS(ME)^3 Onset = Apex: the next
    frame). Other notes a reader keeps there: ``long_offset`` (CAS(ME)^3), ``subject_dir``,
    ``emotion_conflict``, ``second_interval``, and the label scheme's ``class`` and
    ``label_note``.
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
