"""The MEGC long-video scores: expression spotting (MEGC 2020–2022) and spot-then-recognise
(STR, MEGC 2023–2025), as the organisers' evaluation code computes them.

Sources (read line by line; cited below as A and B):

- A: the MEGC 2020 spotting baseline of the organisers, HeyingGithub/
  Baseline-project-for-MEGC2020_spotting @7d186cf, ``MDMD_results/result_helper.py``.
- B: the STRS metric, genbing99/STRS-Metric @eb86468, ``strs_metric.py`` (by the author of
  MEAN, the MEGC 2024/2025 STR baseline; the MEGC 2025 paper's baseline table has exactly its
  columns and values).

Spotting. An interval covers the frames ``onset..offset``, both included, so the IoU of two
intervals is ``|A ∩ B| / |A ∪ B|`` over frame sets (B ``strs_metric.py:11-13``; A
``result_helper.py:5-9`` computes the same for overlapping intervals). In each video and for
each kind (``micro``, ``macro``) separately (A scores the two kinds in separate runs,
``result_helper.py:111-113``), the spotted intervals are taken in the order given; each claims
every ground-truth interval not yet claimed with IoU ≥ 0.5, and counts as a false positive if
it claims none; a ground-truth interval nobody claimed is a false negative (B
``strs_metric.py:56-68``, including its one quirk: no ``break``, so an interval can claim two
heavily overlapping ground truths). TP, FP and FN are summed over the videos; precision,
recall and F1 follow with 0 for 0/0 (B ``strs_metric.py:15-20``); ``overall`` pools the
counts of both kinds, as the MEGC 2020 results do (A ``eval_res_txt/MEGC2020_results.txt``:
CAS(ME)² overall 130 TP of 6558 spotted, 357 ground truths, F1 0.0376).

Two choices where A and B differ, both the stricter: an interval spotted in a video without
ground truth is a false positive (A scores every video; B iterates the videos of the ground
truth, ``strs_metric.py:110``, and never sees it), and a ground-truth interval is a false
negative even when nothing at all was spotted for its subject (B takes its subjects from the
predictions, ``strs_metric.py:99``; A skips a video without a prediction file,
``result_helper.py:100-102``).

Recognition (STR). On the spotted true positives whose ground-truth label is one of
``classes`` (default: every label of the ground truth, B ``strs_metric.py:98``), each class
is scored one against the rest: TP, FP, FN of "is class c" over those pairs, its precision
and recall (0 for 0/0). The analysis F1 is the harmonic mean of the mean precision and the
mean recall over the classes (``strs_metric.py:43-45``; not the mean of per-class F1s, which
is reported as ``uf1``), and ``STRS = F1_spotting × F1_analysis`` (``strs_metric.py:135``).
Where B gives something else: when every pair is of one class and recognised as it, B's
``confusion_matrix(...).ravel()`` has one cell and its ``except`` scores the class 0
(``strs_metric.py:34-37``); here it scores 1. B's ``uar`` is the mean of per-class
*precision* (``strs_metric.py:47``); here ``uar`` is the mean recall. With no pair at all B
fails (``new_TP_df["gt"]`` of an empty frame) or returns NaN; here every analysis score is 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

KINDS = ("micro", "macro")


class Expression(NamedTuple):
    """An expression interval of a long video: frames ``onset..offset`` (both included) of
    ``video``, its ``kind`` (``micro`` or ``macro``) and ``label`` (the annotated emotion, or
    the class a recogniser gave it; ``None`` where there is none)."""

    video: str
    onset: int
    offset: int
    kind: str = "micro"
    label: str | None = None


def interval_iou(a: Expression, b: Expression) -> float:
    """IoU of the frame sets ``onset..offset`` of two intervals (0 for disjoint ones)."""
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    union = (a.offset - a.onset + 1) + (b.offset - b.onset + 1) - inter
    return inter / union


@dataclass(frozen=True)
class Counts:
    """True positives, false positives and false negatives, with the scores they give."""

    tp: int
    fp: int
    fn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


class Matching(NamedTuple):
    """The outcome of matching: ``pairs`` (truth, spotted) of every true positive, the spotted
    intervals that matched nothing and the ground truths nobody matched."""

    pairs: list[tuple[Expression, Expression]]
    false_positives: list[Expression]
    missed: list[Expression]

    def counts(self, kind: str | None = None) -> Counts:
        """TP, FP, FN of one kind, or of both (``None``)."""
        def n(items):
            return sum(1 for e in items if kind is None or e.kind == kind)
        return Counts(n(t for t, _ in self.pairs), n(self.false_positives), n(self.missed))


def match(truth: Iterable[Expression], spotted: Iterable[Expression], *,
          threshold: float = 0.5) -> Matching:
    """Match spotted intervals to the ground truth video by video and kind by kind, the
    spotted ones in the order given (see the module doc)."""
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for e in truth:
        _check(e, "ground truth")
        groups[e.video, e.kind][0].append(e)
    for e in spotted:
        _check(e, "spotted")
        groups[e.video, e.kind][1].append(e)
    pairs, false_positives, missed = [], [], []
    for gts, preds in groups.values():
        claimed = [False] * len(gts)
        for p in preds:
            hit = False
            for i, g in enumerate(gts):
                if not claimed[i] and interval_iou(p, g) >= threshold:
                    claimed[i] = hit = True
                    pairs.append((g, p))
            if not hit:
                false_positives.append(p)
        missed += [g for g, c in zip(gts, claimed, strict=True) if not c]
    return Matching(pairs, false_positives, missed)


def _check(e: Expression, what: str) -> None:
    if e.kind not in KINDS:
        raise ValueError(f"{what} interval {e}: kind must be one of {KINDS}")
    if e.offset < e.onset:
        raise ValueError(f"{what} interval {e}: offset before onset")


def spotting_scores(truth: Iterable[Expression], spotted: Iterable[Expression], *,
                    threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Precision, recall and F1 (with TP, FP, FN) of each kind and ``overall`` (the two
    kinds' counts pooled), over every video given."""
    m = match(truth, spotted, threshold=threshold)
    out = {kind: m.counts(kind) for kind in KINDS}
    out["overall"] = out["micro"] + out["macro"]
    return {k: c.as_dict() for k, c in out.items()}


def str_scores(truth: Sequence[Expression], spotted: Iterable[Expression], *,
               classes: Sequence[str] | None = None,
               threshold: float = 0.5) -> dict[str, Any]:
    """The spot-then-recognise scores: spotting counts and F1 (both kinds pooled, as B pools
    every ground-truth row it is given), the analysis precision, recall and F1 on the spotted
    true positives, their ``uf1`` and ``uar``, and ``strs`` (see the module doc)."""
    m = match(truth, spotted, threshold=threshold)
    spot = m.counts()
    labels = sorted({e.label for e in truth if e.label is not None}) if classes is None \
        else list(classes)
    pairs = [(t.label, p.label) for t, p in m.pairs if t.label in labels]
    per_class = {c: Counts(sum(t == c and p == c for t, p in pairs),
                           sum(t != c and p == c for t, p in pairs),
                           sum(t == c and p != c for t, p in pairs)) for c in labels}
    n = len(labels)
    precision = sum(c.precision for c in per_class.values()) / n if n else 0.0
    recall = sum(c.recall for c in per_class.values()) / n if n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"spotting": spot.as_dict(), "analysis": {
                "precision": precision, "recall": recall, "f1": f1,
                "uf1": sum(c.f1 for c in per_class.values()) / n if n else 0.0,
                "uar": recall, "pairs": len(pairs), "classes": labels,
                "per_class": {k: c.as_dict() for k, c in per_class.items()}},
            "strs": spot.f1 * f1}
