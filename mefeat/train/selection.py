"""Epoch-selection policies: which epoch's test predictions a LOSO run reports.

Training keeps the held-out predictions of every epoch a policy may need (``epochs_to_keep``),
so one run reports several policies side by side; a policy is then a pure function of that
per-epoch record (``choose_epochs``), also for a bench whose folds ran as separate jobs.

- ``last`` (the default): the last epoch. Nothing is chosen on the test subject.
- ``test-best``: each fold's epoch of best accuracy on its held-out subject, the later epoch
  on ties (HTNet's ``main_HTNet.py`` practice). Chosen on the test subject: optimistic.
- ``official``: each model's own repository's rule (``Recipe.selection``, with its source),
  e.g. CausalNet's earliest best epoch with a stop at accuracy 1.0, or the OFF-TANet
  repository's one epoch for all folds of best mean per-fold UAR. Also chosen on the test
  subjects, and always labelled so.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from mefeat.errors import MefeatError
from mefeat.models.recipe import Recipe, Selection
from mefeat.train.metrics import fold_score

SELECTIONS = ("last", "test-best", "official")

TEST_BEST = Selection(
    "per-fold", metric="acc", ties="latest",
    source="mefeat test-best: HTNet main_HTNet.py:295's rule (best <= val_acc) for any model",
)
LAST = Selection("last", source="mefeat: the last epoch")

NOTES = {
    "last": "fixed epochs; the last epoch's predictions (nothing chosen on the test subject)",
    "test-best": "TEST-BEST: the epoch with the best accuracy on each held-out subject "
                 "(the official repositories' practice; optimistic, for reproduction only)",
    "official": "OFFICIAL: the model's own repository's epoch rule, chosen on the held-out "
                "subjects (optimistic, for reproduction only): {rule} [{source}]",
}


def check_policy(policy: str) -> str:
    if policy not in SELECTIONS:
        raise MefeatError(f"selection must be one of {SELECTIONS}, got {policy!r}")
    return policy


def rule_of(policy: str, recipe: Recipe) -> Selection:
    """The :class:`Selection` rule a policy applies to a model trained by ``recipe``."""
    check_policy(policy)
    return {"last": LAST, "test-best": TEST_BEST, "official": recipe.selection}[policy]


def note(policy: str, recipe: Recipe) -> str:
    """How ``policy`` is labelled in every output."""
    rule = rule_of(policy, recipe)
    return NOTES[policy].format(rule=rule.rule, source=rule.source)


def epochs_to_keep(policies: Sequence[str], recipe: Recipe, epochs: int) -> list[int]:
    """The 1-based epochs whose held-out predictions ``policies`` need (the last included)."""
    keep = {epochs}
    for p in policies:
        keep.update(rule_of(p, recipe).evaluated(epochs))
    return sorted(keep)


_OPS = {">=": operator.ge, ">": operator.gt}


def _fold_pick(rule: Selection, scores: Sequence[float], epochs: Sequence[int]) -> int:
    """One fold's epoch under a per-fold rule: scores of ``epochs`` in ascending order."""
    best, chosen, wait = None, epochs[0], 0
    for score, epoch in zip(scores, epochs, strict=True):
        improved = best is None or score > best
        if improved or (rule.ties == "latest" and score >= best):
            chosen = epoch
        if improved:
            best, wait = score, 0
        else:
            wait += 1
        # Checked after the epoch is recorded, as CausalNet's break and Lightning's
        # EarlyStopping (which runs beside the checkpoint of the same epoch) do.
        if rule.stop is not None and _OPS[rule.stop[0]](score, rule.stop[1]):
            break
        if rule.patience is not None and wait >= rule.patience:
            break
    return chosen


def _all_folds_pick(rule: Selection, mean: dict[int, float]) -> int:
    """The one epoch of an all-folds rule, from the mean score of each epoch."""
    if rule.ties == "set-order":
        # The OFF-TANet repository: sorted(list(observed_epochs), reverse=True, key=...)[0]
        # over a set of 0-based epoch indices; a stable sort keeps the set's order on ties.
        order = [e + 1 for e in list({e - 1 for e in mean})]
    elif rule.ties == "earliest":
        order = sorted(mean)
    else:
        order = sorted(mean, reverse=True)
    return max(order, key=lambda e: mean[e])  # max() returns the first maximum


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
    if rule.kind == "last":
        return {subject: epochs for subject, _ in folds}
    candidates = [e for e in rule.evaluated(epochs) if e in row]
    if not candidates:
        raise MefeatError(f"no kept epoch serves the rule {rule.rule!r}")

    def scores(test: np.ndarray) -> list[float]:
        return [fold_score(rule.metric, labels[test], predictions[row[e], test], num_classes)
                for e in candidates]

    if rule.kind == "per-fold":
        return {subject: _fold_pick(rule, scores(test), candidates) for subject, test in folds}
    per_fold = np.array([scores(test) for _, test in folds])  # (folds, candidates)
    mean = dict(zip(candidates, per_fold.mean(axis=0).tolist(), strict=True))
    best = _all_folds_pick(rule, mean)
    return {subject: best for subject, _ in folds}


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
