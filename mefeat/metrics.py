"""Recognition metrics of the MEGC protocol: UF1, UAR and accuracy over pooled predictions.

MEGC2019 (See et al., "MEGC 2019 - the second facial micro-expressions grand challenge",
FG 2019) scores a LOSO run on the predictions of every fold pooled together, not fold by
fold:

    UF1 = (1/C) * sum_i F1_i,   F1_i = 2 TP_i / (2 TP_i + FP_i + FN_i)
    UAR = (1/C) * sum_i TP_i / N_i   (N_i: samples whose true class is i)

The CausalNet supplement prints both formulas with 1/(C-1) in front of a sum of C terms;
that is a typo (it would give scores above 1), and mefeat follows MEGC's 1/C.

Classes that do not occur: the official evaluation code of STSTNet
(github.com/christy1206/STSTNet, ``recognition_evaluation``) and HTNet
(github.com/wangzhifengharrison/HTNet, the same function) build a one-vs-rest confusion
matrix per class and silently skip a class when the unpacking of that matrix fails, which
happens exactly when the class is absent from both the truth and the predictions. mefeat
makes that rule explicit:

- a class absent from both truth and predictions is left out of both means (its F1 is 0/0
  and it says nothing about the classifier);
- a class that is predicted but never true counts in UF1 with F1 = 0 (every prediction of
  it is a false positive) and is left out of UAR, whose recall TP/N is 0/0 (the official
  code would return NaN there);
- with no sample at all every score is NaN.

On the full MEGC2019 composite set every class occurs, so the rule only matters for small
subsets (one dataset, a few folds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[int] | int,
) -> dict[str, Any]:
    """UF1, UAR and accuracy of pooled predictions (MEGC2019 definitions, see module doc).

    Args:
        y_true: true class ids, shape (N,).
        y_pred: predicted class ids, shape (N,).
        classes: the class ids of the label scheme, or their number C (ids 0..C-1).

    Returns:
        ``{"uf1", "uar", "acc", "n", "f1_per_class", "recall_per_class",
        "confusion"}``; per-class entries are ``None`` for classes left out of a mean;
        ``confusion[i][j]`` counts samples of true class ``classes[i]`` predicted as
        ``classes[j]``.
    """
    labels = list(range(classes)) if isinstance(classes, int) else [int(c) for c in classes]
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    n = int(t.size)
    if n == 0:
        nan = float("nan")
        return {
            "uf1": nan,
            "uar": nan,
            "acc": nan,
            "n": 0,
            "f1_per_class": [None] * len(labels),
            "recall_per_class": [None] * len(labels),
            "confusion": [[0] * len(labels) for _ in labels],
        }
    # Counted from the labels themselves (sklearn's confusion_matrix refuses a subset in
    # which no true label is in the scheme). A prediction outside the label scheme
    # (MMNet's released 5-logit head on 3 classes) is no column of ``cm`` but is still a
    # sample of its true class that was missed.
    cm = np.array([[np.sum((t == a) & (p == b)) for b in labels] for a in labels], np.int64)
    tp = np.array([np.sum((t == c) & (p == c)) for c in labels], np.float64)
    n_true = np.array([np.sum(t == c) for c in labels], np.float64)  # TP + FN
    n_pred = np.array([np.sum(p == c) for c in labels], np.float64)  # TP + FP
    f1: list[float | None] = []
    recall: list[float | None] = []
    for i in range(len(labels)):
        denom = n_true[i] + n_pred[i]  # = 2TP + FP + FN
        f1.append(float(2 * tp[i] / denom) if denom > 0 else None)
        recall.append(float(tp[i] / n_true[i]) if n_true[i] > 0 else None)
    f1_used = [v for v in f1 if v is not None]
    rec_used = [v for v in recall if v is not None]
    return {
        "uf1": float(np.mean(f1_used)) if f1_used else float("nan"),
        "uar": float(np.mean(rec_used)) if rec_used else float("nan"),
        # accuracy counts every sample, also those whose class is outside ``classes``
        "acc": float(np.mean(t == p)),
        "n": n,
        "f1_per_class": f1,
        "recall_per_class": recall,
        "confusion": cm.tolist(),
    }


def fold_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """One fold's score, as the official repositories rank their epochs: ``acc``, or
    ``uar`` / ``uf1`` as the macro recall / F1 over the classes present in the fold's true
    labels or (in-scheme) predictions.

    That is scikit-learn's ``average="macro"`` with its default labels (the OFF-TANet
    repository), torchmetrics 0.9's macro average that drops classes with no TP, FP or FN
    (EDMDBN) and MMNet's own per-class counts; a prediction outside ``0..num_classes-1`` is
    wrong and names no class. A class that is predicted but never true has recall 0 and F1 0.
    """
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    if t.size == 0:
        return float("nan")
    if metric == "acc":
        return float(np.mean(t == p))
    present = np.union1d(t, p[(p >= 0) & (p < num_classes)])
    values = []
    for c in present:
        tp = float(np.sum((t == c) & (p == c)))
        n_true, n_pred = float(np.sum(t == c)), float(np.sum(p == c))
        if metric == "uar":
            values.append(tp / n_true if n_true else 0.0)
        elif metric == "uf1":
            values.append(2 * tp / (n_true + n_pred))
        else:
            raise ValueError(f"unknown fold metric {metric!r}; use acc, uar or uf1")
    return float(np.mean(values))


def metrics_table(
    predictions: Any,
    classes: Sequence[int] | int = 3,
    *,
    label_col: str = "label",
    pred_col: str = "prediction",
    dataset_col: str = "dataset",
) -> dict[str, Any]:
    """Overall and per-dataset metrics of a prediction table.

    Args:
        predictions: a pandas DataFrame, a mapping of columns, or an iterable of records
            (dicts), with at least the columns ``label``, ``prediction`` and ``dataset``.
        classes: class ids or their number (see ``metrics``).

    Returns:
        ``{"overall": metrics(...), "per_dataset": {dataset: metrics(...)}}``; datasets
        sorted by name. Each dataset is scored on its own pooled predictions, as MEGC2019
        reports its CASME II, SAMM and SMIC columns.
    """
    cols = _columns(predictions, (label_col, pred_col, dataset_col))
    y, p, d = (np.asarray(cols[c]) for c in (label_col, pred_col, dataset_col))
    per_dataset = {
        str(name): metrics(y[d == name], p[d == name], classes)
        for name in sorted({str(v) for v in d})
    }
    return {"overall": metrics(y, p, classes), "per_dataset": per_dataset}


def _columns(table: Any, needed: Iterable[str]) -> dict[str, list[Any]]:
    # Accept a DataFrame, a dict of columns or a list of records without importing pandas.
    needed = list(needed)
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise KeyError(f"prediction table lacks column(s) {missing}")
        return {c: list(table[c]) for c in needed}
    if isinstance(table, Mapping):
        missing = [c for c in needed if c not in table]
        if missing:
            raise KeyError(f"prediction table lacks column(s) {missing}")
        return {c: list(table[c]) for c in needed}
    records = list(table)
    out: dict[str, list[Any]] = {c: [] for c in needed}
    for i, rec in enumerate(records):
        for c in needed:
            if c not in rec:
                raise KeyError(f"prediction record {i} lacks field {c!r}")
            out[c].append(rec[c])
    return out
