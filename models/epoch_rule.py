"""The official epoch-selection rule of a recipe: which epoch's test predictions a
repository reports (:class:`Selection`), and the error a recipe the trainer cannot run
raises."""

from __future__ import annotations

from dataclasses import dataclass

from mefeat.errors import ModelError

__all__ = ["FOLD_METRICS", "SELECTION_KINDS", "TIES", "RecipeError", "Selection"]


class RecipeError(ModelError):
    """A recipe the trainer cannot run (an unknown field or value)."""


def need(ok: bool, what: str) -> None:
    """Raise :class:`RecipeError` with ``what`` unless ``ok``."""
    if not ok:
        raise RecipeError(what)


SELECTION_KINDS = ("last", "per-fold", "all-folds")
FOLD_METRICS = ("acc", "uar", "uf1")
TIES = ("earliest", "latest", "set-order")


@dataclass(frozen=True)
class Selection:
    """An official repository's rule for the epoch whose test predictions it reports.

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
    ``first, first + every, ...`` up to the recipe's epochs (1-based). ``stop``: a fold ends
    after the first evaluation whose metric satisfies it (``(">=", 1.0)``); ``patience``: or
    after this many evaluations without a strict improvement. A stopped fold's later epochs
    are not candidates (mefeat still trains them, so that ``last`` comes from the same run).
    """

    kind: str
    source: str
    metric: str = "acc"
    ties: str = "latest"
    every: int = 1
    first: int = 1
    stop: tuple[str, float] | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        need(self.kind in SELECTION_KINDS, f"selection kind {self.kind!r} is not one of "
              f"{SELECTION_KINDS}")
        need(self.metric in FOLD_METRICS, f"selection metric {self.metric!r} is not one of "
              f"{FOLD_METRICS}")
        need(self.ties in TIES, f"selection ties {self.ties!r} is not one of {TIES}")
        need(self.every >= 1 and self.first >= 1, f"selection every={self.every}, "
              f"first={self.first}: both must be >= 1")
        if self.stop is not None:
            op, value = self.stop
            need(op in (">=", ">"), f"selection stop {self.stop!r}: the operator is >= or >")
            object.__setattr__(self, "stop", (op, float(value)))
        need(self.patience is None or self.patience >= 1,
              f"selection patience must be >= 1, got {self.patience}")
        need(self.kind != "last" or (self.stop is None and self.patience is None),
              "a 'last' selection has no stop or patience")
        need(self.kind != "all-folds" or (self.stop is None and self.patience is None),
              "an 'all-folds' selection cannot stop folds early (one epoch serves all)")

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
        return f"{text} ({tie}), evaluated at {when}{extra}"
