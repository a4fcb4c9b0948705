"""Epoch selection: which epoch's held-out predictions a LOSO run reports.

A run keeps the held-out predictions of every epoch, so every policy is a pure function of
that record (:func:`choose_epochs`), applied when the run is scored, by the rule the run
recorded:

- ``last`` (the default): the last epoch. Nothing is chosen on the test subject.
- ``test-best``: each fold's epoch of best accuracy on its held-out subject, the later epoch
  on ties (HTNet's ``main_HTNet.py`` practice). Chosen on the test subject: optimistic.
- ``official``: each model's own repository's rule (``Recipe.official``, with its source),
  e.g. CausalNet's earliest best epoch with a stop at accuracy 1.0, or the OFF-TANet
  repository's one epoch for all folds of best mean per-fold UAR. Also chosen on the test
  subjects, and always labelled so.

A rule's ``kind`` names the function that applies it (:data:`KINDS`): ``last``,
``per-fold`` or ``all-folds``; adding a kind is one function here and its test.
:class:`FoldPicker` applies a per-fold rule while a fold trains, so that the weights of the
epoch it picks can be kept as the fold's checkpoint.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mefeat.metrics import fold_score, metrics

from .parts import RecipeError, need

FOLD_METRICS = ("acc", "uar", "uf1")
# How a paper turns the chosen epochs into its figure (``Selection.counting``).
COUNTINGS = {
    "pooled": "pooled: every held-out sample of every fold in one confusion (MEGC 2019)",
    "fold-mean": "mean over folds of each fold's macro UF1 / UAR / accuracy at its chosen "
                 "epoch",
    "nonzero-folds": "pooled over the folds whose chosen epoch has accuracy above 0; the "
                     "others' samples are left out",
    "best-acc-folds": "UF1 and UAR pooled at each fold's chosen epoch; accuracy: each "
                      "fold's most correct answers at any kept epoch, summed over folds",
}
TIES = ("earliest", "latest", "set-order")
SELECTIONS = ("last", "test-best", "official")


@dataclass(frozen=True)
class Selection:
    """An epoch-selection rule.

    ``kind``:
      - ``"last"``: the last epoch (nothing chosen);
      - ``"per-fold"``: each fold its own epoch, the best ``metric`` on its held-out
        subject;
      - ``"all-folds"``: one epoch for every fold, the best mean over folds of the per-fold
        ``metric``.

    ``metric`` is scored on one fold's held-out samples: ``acc``, or ``uar`` / ``uf1`` as
    macro recall / F1 over the classes present in that fold's labels or predictions (what
    scikit-learn's ``average="macro"``, torchmetrics 0.9 and MMNet's own counts do).
    ``ties``: ``"earliest"`` (a strict ``>``), ``"latest"`` (``>=``), or ``"set-order"``:
    the first maximum in the order CPython iterates the set of evaluated 0-based epoch
    indices (the OFF-TANet repository's ``sorted(set, key=...)[0]``). Evaluated epochs are
    ``first, first + every, ...`` up to the run's epochs (1-based). ``stop``: a fold ends
    after the first evaluation whose metric satisfies it (``(">=", 1.0)``); ``patience``: or
    after this many evaluations without a strict improvement. A stopped fold's later epochs
    are not candidates (mefeat still trains them, so that ``last`` comes from the same run).
    ``counting``: how the paper turns the chosen epochs into its figure (:data:`COUNTINGS`);
    mefeat's headline figure is always pooled, and a run scored under this rule also reports
    the figure counted this way, next to it (:func:`counted_scores`).
    """

    kind: str
    source: str
    metric: str = "acc"
    ties: str = "latest"
    every: int = 1
    first: int = 1
    stop: tuple[str, float] | None = None
    patience: int | None = None
    counting: str = "pooled"

    def __post_init__(self) -> None:
        need(self.kind in KINDS, f"selection kind {self.kind!r} is not one of {sorted(KINDS)}")
        need(self.metric in FOLD_METRICS, f"selection metric {self.metric!r} is not one of "
             f"{FOLD_METRICS}")
        need(self.ties in TIES, f"selection ties {self.ties!r} is not one of {TIES}")
        need(self.every >= 1 and self.first >= 1, f"selection every={self.every}, "
             f"first={self.first}: both must be >= 1")
        if self.stop is not None:
            op, value = self.stop
            need(op in _OPS, f"selection stop {self.stop!r}: the operator is >= or >")
            object.__setattr__(self, "stop", (op, float(value)))
        need(self.patience is None or self.patience >= 1,
             f"selection patience must be >= 1, got {self.patience}")
        need(self.kind != "last" or (self.stop is None and self.patience is None),
             "a 'last' selection has no stop or patience")
        need(self.kind != "all-folds" or (self.stop is None and self.patience is None),
             "an 'all-folds' selection cannot stop folds early (one epoch serves all)")
        need(self.counting in COUNTINGS, f"selection counting {self.counting!r} is not one "
             f"of {sorted(COUNTINGS)}")
        need(self.kind != "last" or self.counting == "pooled",
             "a 'last' selection chooses nothing for a paper to count otherwise than pooled")

    def evaluated(self, epochs: int) -> list[int]:
        """The 1-based epochs this rule looks at, for a run of ``epochs`` epochs."""
        if self.kind == "last":
            return [epochs]
        return list(range(self.first, epochs + 1, self.every))

    @property
    def rule(self) -> str:
        """The rule in words."""
        if self.kind == "last":
            return "the last epoch"
        tie = {"earliest": "earliest epoch on ties", "latest": "latest epoch on ties",
               "set-order": "ties broken by Python's set order of the epochs"}[self.ties]
        when = "every epoch" if self.every == 1 else (
            f"epochs {self.first}, {self.first + self.every}, ... (every {self.every})")
        if self.kind == "per-fold":
            text = f"per fold, the epoch of best test-subject {self.metric}"
        else:
            text = f"one epoch for all folds, of best mean over folds of per-fold {self.metric}"
        extra = ""
        if self.stop is not None:
            extra += f"; a fold stops once {self.metric} {self.stop[0]} {self.stop[1]:g}"
        if self.patience is not None:
            extra += f"; early stopping after {self.patience} evaluations without improvement"
        if self.counting != "pooled":
            extra += f"; the paper counts: {COUNTINGS[self.counting]}"
        return f"{text} ({tie}), evaluated at {when}{extra}"


_OPS = {">=": operator.ge, ">": operator.gt}

def check_policy(policy: str) -> str:
    if policy not in SELECTIONS:
        raise RecipeError(f"selection must be one of {SELECTIONS}, got {policy!r}")
    return policy


def rule_of(policy: str, official: Selection) -> Selection:
    """The rule ``policy`` applies, given the recipe's ``official`` rule."""
    check_policy(policy)
    return {"last": LAST, "test-best": TEST_BEST, "official": official}[policy]


def note(policy: str, official: Selection) -> str:
    """How ``policy`` is labelled in every output."""
    rule = rule_of(policy, official)
    return NOTES[policy].format(rule=rule.rule, source=rule.source)


# -- the rules applied --------------------------------------------------------------------


class FoldPicker:
    """A per-fold rule applied as a fold trains: :meth:`offer` each evaluated epoch's score
    in order; it says whether that epoch is now the fold's pick."""

    def __init__(self, rule: Selection) -> None:
        need(rule.kind == "per-fold", f"FoldPicker applies per-fold rules, not {rule.kind!r}")
        self.rule = rule
        self.best: float | None = None
        self.chosen: int | None = None
        self.wait = 0
        self.stopped = False

    def offer(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s score; True if ``epoch`` is now the chosen one."""
        if self.stopped:
            return False
        rule = self.rule
        improved = self.best is None or score > self.best
        picked = improved or (rule.ties == "latest" and score >= self.best)
        if picked:
            self.chosen = epoch
        if improved:
            self.best, self.wait = score, 0
        else:
            self.wait += 1
        # Checked after the epoch is recorded, as CausalNet's break and Lightning's
        # EarlyStopping (which runs beside the checkpoint of the same epoch) do.
        if rule.stop is not None and _OPS[rule.stop[0]](score, rule.stop[1]):
            self.stopped = True
        if rule.patience is not None and self.wait >= rule.patience:
            self.stopped = True
        return picked


def _choose_last(rule, scores_of, candidates, folds, epochs) -> dict[str, int]:
    return {subject: epochs for subject, _ in folds}


def _choose_per_fold(rule, scores_of, candidates, folds, epochs) -> dict[str, int]:
    out = {}
    for subject, test in folds:
        picker = FoldPicker(rule)
        for epoch, score in zip(candidates, scores_of(test), strict=True):
            picker.offer(epoch, score)
        out[subject] = picker.chosen
    return out


def _choose_all_folds(rule, scores_of, candidates, folds, epochs) -> dict[str, int]:
    per_fold = np.array([scores_of(test) for _, test in folds])  # (folds, candidates)
    mean = dict(zip(candidates, per_fold.mean(axis=0).tolist(), strict=True))
    if rule.ties == "set-order":
        # The OFF-TANet repository: sorted(list(observed_epochs), reverse=True, key=...)[0]
        # over a set of 0-based epoch indices; a stable sort keeps the set's order on ties.
        order = [e + 1 for e in list({e - 1 for e in mean})]
    elif rule.ties == "earliest":
        order = sorted(mean)
    else:
        order = sorted(mean, reverse=True)
    best = max(order, key=lambda e: mean[e])  # max() returns the first maximum
    return {subject: best for subject, _ in folds}


KINDS: dict[str, Callable[..., dict[str, int]]] = {
    "last": _choose_last, "per-fold": _choose_per_fold, "all-folds": _choose_all_folds,
}


LAST = Selection("last", source="mefeat: the last epoch")
TEST_BEST = Selection(
    "per-fold", metric="acc", ties="latest",
    source="mefeat test-best: HTNet main_HTNet.py:295's rule (best <= val_acc) for any model",
)
NOTES = {
    "last": "fixed epochs; the last epoch's predictions (nothing chosen on the test subject)",
    "test-best": "TEST-BEST: the epoch with the best accuracy on each held-out subject "
                 "(the official repositories' practice; optimistic, for reproduction only)",
    "official": "OFFICIAL: the model's own repository's epoch rule, chosen on the held-out "
                "subjects (optimistic, for reproduction only): {rule} [{source}]",
}


def choose_epochs(
    rule: Selection,
    predictions: np.ndarray,
    kept: Sequence[int],
    labels: np.ndarray,
    folds: Sequence[tuple[str, np.ndarray]],
    num_classes: int,
    epochs: int,
) -> dict[str, int]:
    """The epoch ``rule`` picks for each fold.

    Args:
        predictions: (len(kept), N) held-out predictions after each kept epoch.
        kept: the 1-based epochs of the rows of ``predictions`` (ascending).
        labels: (N,) true classes.
        folds: (subject, test indices) of the folds that ran.
        epochs: the run's epochs (``last`` picks it).
    """
    row = {e: i for i, e in enumerate(kept)}
    candidates = [e for e in rule.evaluated(epochs) if e in row]
    if rule.kind != "last" and not candidates:
        raise RecipeError(f"no kept epoch serves the rule {rule.rule!r}")

    def scores_of(test: np.ndarray) -> list[float]:
        return [fold_score(rule.metric, labels[test], predictions[row[e], test], num_classes)
                for e in candidates]

    return KINDS[rule.kind](rule, scores_of, candidates, folds, epochs)


def selected_predictions(
    chosen: dict[str, int], predictions: np.ndarray, kept: Sequence[int],
    folds: Sequence[tuple[str, np.ndarray]], n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the prediction of its fold's chosen epoch and that epoch (-1: no fold)."""
    row = {e: i for i, e in enumerate(kept)}
    pred = np.full(n, -1, np.int64)
    epoch = np.full(n, -1, np.int64)
    for subject, test in folds:
        e = chosen[subject]
        pred[test] = predictions[row[e], test]
        epoch[test] = e
    return pred, epoch


def counted_scores(
    rule: Selection,
    chosen: dict[str, int],
    predictions: np.ndarray,
    kept: Sequence[int],
    labels: np.ndarray,
    folds: Sequence[tuple[str, np.ndarray]],
    num_classes: int,
) -> dict | None:
    """The figure as ``rule``'s paper counts it from the chosen epochs, or ``None`` where it
    counts as mefeat does (pooled): ``counting`` and its words, ``uf1``, ``uar``, ``acc``,
    ``folds_counted`` and ``folds_dropped`` (subjects)."""
    if rule.counting == "pooled":
        return None
    row = {e: i for i, e in enumerate(kept)}
    per_fold = [(subject, labels[test], predictions[row[chosen[subject]], test])
                for subject, test in folds]
    out: dict = {"counting": rule.counting, "description": COUNTINGS[rule.counting]}
    if rule.counting == "fold-mean":
        for m in FOLD_METRICS:
            out[m] = float(np.mean([fold_score(m, t, p, num_classes) for _, t, p in per_fold]))
        out.update(folds_counted=len(per_fold), folds_dropped=[])
        return out
    if rule.counting == "best-acc-folds":
        empty = [np.zeros(0, int)]
        pooled = metrics(np.concatenate([t for _, t, _ in per_fold] or empty),
                         np.concatenate([p for _, _, p in per_fold] or empty), num_classes)
        best = sum(int((predictions[:, test] == labels[test]).sum(axis=1).max())
                   for _, test in folds if len(test))
        out.update(uf1=pooled["uf1"], uar=pooled["uar"],
                   acc=best / pooled["n"] if pooled["n"] else float("nan"),
                   folds_counted=len(per_fold), folds_dropped=[])
        return out
    answered = [np.any(t == p) for _, t, p in per_fold]  # accuracy above 0
    counted = [f for f, a in zip(per_fold, answered, strict=True) if a]
    pooled = metrics(np.concatenate([t for _, t, _ in counted] or [np.zeros(0, int)]),
                     np.concatenate([p for _, _, p in counted] or [np.zeros(0, int)]),
                     num_classes)
    out.update({m: pooled[m] for m in FOLD_METRICS}, folds_counted=len(counted),
               folds_dropped=[f[0] for f, a in zip(per_fold, answered, strict=True) if not a])
    return out
