"""What a LOSO run gave: one :class:`FoldResult` per trained fold (its record on disk, in
the run folder), and :class:`LosoResult`, the folds of one run pooled and scored.

Every fold keeps the held-out predictions of every epoch, so any selection policy is applied
when the run is scored, by the rule the run recorded (its recipe), never by today's
registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mefeat.metrics import metrics_table
from mefeat.recipes import Recipe
from mefeat.recipes.selection import (
    COUNTINGS,
    SELECTIONS,
    choose_epochs,
    counted_scores,
    note,
    rule_of,
)
from mefeat.train.errors import TrainingError


@dataclass
class FoldResult:
    """One trained fold of one run, as the run folder keeps it (JSON).

    Attributes:
        subject: the held-out subject (``dataset/subject``).
        run: the run index; ``seed`` the run's seed.
        keys, labels, datasets: the held-out samples.
        indices: their positions in the data the run was given (in-memory runs).
        epochs: epochs trained; ``epoch_predictions``: held-out predictions after each
            epoch of ``kept`` (default every epoch, 1-based), one row an epoch.
        logits: (T, width) held-out logits of the last epoch.
        history: per epoch ``train_loss`` (mean over its steps), ``test_loss`` and
            ``test_acc`` (held-out), ``lr`` (at the epoch's first step).
        lr_steps: the learning rate of every step (per-step schedules only).
        checkpoint: ``{"epoch", "policy", "file"}`` of the weights kept, or ``None``.
        seconds: wall time (a batched group's time divided by its size).
        fold_batching: how it was trained (one at a time or batched, and why).
        features: (T, d) the final model's features of the held-out samples (t-SNE).
        finished, load_avg: when the fold ended and the machine's load average then.
        kept: the epochs of the rows of ``epoch_predictions`` when not every epoch (runs of
            earlier mefeat versions kept only those their policies needed).
    """

    subject: str
    run: int
    seed: int
    keys: list[str]
    labels: list[int]
    datasets: list[str]
    epochs: int
    epoch_predictions: list[list[int]]
    logits: list[list[float]]
    history: dict[str, list[float]]
    indices: list[int] = field(default_factory=list)
    lr_steps: list[float] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    seconds: float = 0.0
    fold_batching: str = ""
    features: list[list[float]] | None = None
    finished: str = ""
    load_avg: list[float] = field(default_factory=list)
    kept: list[int] | None = None

    @property
    def kept_epochs(self) -> list[int]:
        return list(self.kept) if self.kept is not None else list(range(1, self.epochs + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        return cls(**data)


@dataclass
class LosoResult:
    """The folds of one LOSO run, pooled.

    Attributes:
        model: registry name.
        selection: the policy of ``predictions``.
        recipe: the recipe that ran (overrides applied); its ``official`` rule is the one
            ``official`` applies.
        num_classes: classes of the label scheme.
        folds: one :class:`FoldResult` per fold that ran, in subject order.
        settings: how it ran (recipe, overrides, device, fold batching, workers...).
        n_samples: samples of the data (scored or not); ``subjects``: every subject of it.
        wall_seconds: wall time of the training call.
    """

    model: str
    selection: str
    recipe: Recipe
    num_classes: int
    folds: list[FoldResult]
    settings: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 0
    subjects: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def seed(self) -> int:
        return self.folds[0].seed if self.folds else int(self.settings.get("seed", 0))

    @property
    def missing(self) -> list[str]:
        """Subjects whose fold has not run."""
        done = {f.subject for f in self.folds}
        return [s for s in self.subjects if s not in done]

    # -- the pooled record --------------------------------------------------------------

    def _pooled(self):
        kept = self.kept_epochs
        if any(f.kept_epochs != kept for f in self.folds):
            raise TrainingError("the folds of this run kept different epochs; they cannot be "
                                "scored together")
        labels = np.concatenate([np.asarray(f.labels, np.int64) for f in self.folds])
        preds = np.concatenate([np.asarray(f.epoch_predictions, np.int64).reshape(
            len(kept), len(f.labels)) for f in self.folds], axis=1)
        test, start = [], 0
        for f in self.folds:
            test.append((f.subject, np.arange(start, start + len(f.labels))))
            start += len(f.labels)
        return labels, preds, test

    @property
    def kept_epochs(self) -> list[int]:
        """The epochs whose held-out predictions the folds kept (every epoch, unless the run
        was made by an earlier mefeat)."""
        return self.folds[0].kept_epochs if self.folds else list(range(1, self.epochs + 1))

    def chosen(self, policy: str) -> dict[str, int]:
        """The epoch ``policy`` takes for each fold (by the recorded recipe's rules)."""
        if policy not in SELECTIONS:
            raise TrainingError(f"selection must be one of {SELECTIONS}, got {policy!r}")
        if not self.folds:
            return {}
        labels, preds, test = self._pooled()
        return choose_epochs(rule_of(policy, self.recipe.official), preds, self.kept_epochs,
                             labels, test, self.num_classes, self.epochs)

    @property
    def best_epoch(self) -> dict[str, int] | None:
        """The epoch ``selection`` chose per fold (``None`` under ``last``)."""
        return None if self.selection == "last" else self.chosen(self.selection)

    def predictions_for(self, policy: str):
        """One row per held-out sample: ``index`` (into the data), ``key``, ``subject``,
        ``dataset``, ``label``, ``prediction``, ``epoch`` (1-based), under ``policy``."""
        import pandas as pd

        chosen = self.chosen(policy)
        row = {e: i for i, e in enumerate(self.kept_epochs)}
        rows = []
        for f in self.folds:
            e = chosen[f.subject]
            preds = f.epoch_predictions[row[e]]
            for j, key in enumerate(f.keys):
                rows.append({"index": f.indices[j] if f.indices else -1, "key": key,
                             "subject": f.subject, "dataset": f.datasets[j],
                             "label": int(f.labels[j]), "prediction": int(preds[j]),
                             "epoch": int(e), "run": f.run})
        return pd.DataFrame(rows, columns=["index", "key", "subject", "dataset", "label",
                                           "prediction", "epoch", "run"])

    @property
    def predictions(self):
        return self.predictions_for(self.selection)

    def metrics(self, policy: str | None = None) -> dict[str, Any]:
        """Overall and per-dataset UF1/UAR/accuracy (``metrics_table``) of the folds that
        ran, labelled with the policy and how much of the data they cover."""
        policy = policy or self.selection
        table = metrics_table(self.predictions_for(policy), self.num_classes)
        table.update(selection=policy, note=note(policy, self.recipe.official),
                     epochs=self.epochs, folds_scored=len(self.folds),
                     folds_total=len(self.subjects) or len(self.folds),
                     samples_scored=sum(len(f.labels) for f in self.folds),
                     samples_total=self.n_samples or sum(len(f.labels) for f in self.folds),
                     missing_folds=self.missing)
        table["counting"] = COUNTINGS["pooled"]
        if policy != "last":
            table["chosen_epoch"] = chosen = self.chosen(policy)
            labels, preds, test = self._pooled()
            counted = counted_scores(rule_of(policy, self.recipe.official), chosen, preds,
                                     self.kept_epochs, labels, test, self.num_classes)
            if counted is not None:
                table["as_counted"] = counted
        return table

    # -- arrays over the data (in-memory runs) -------------------------------------------

    def _over_data(self, values: Sequence[np.ndarray], fill, dtype) -> np.ndarray:
        first = np.asarray(values[0]) if values else np.zeros((0,))
        out = np.full((self.n_samples, *first.shape[1:]), fill, dtype=dtype)
        for f, v in zip(self.folds, values, strict=True):
            out[np.asarray(f.indices, np.int64)] = v
        return out

    @property
    def logits(self) -> np.ndarray:
        """(N, width) last-epoch logits; NaN rows for samples whose fold did not run."""
        return self._over_data([np.asarray(f.logits, np.float32).reshape(len(f.labels), -1)
                                for f in self.folds], np.nan, np.float32)

    @property
    def epoch_predictions(self) -> np.ndarray:
        """(kept epochs, N) held-out predictions after each kept epoch (every epoch by
        default), -1 where no fold ran."""
        if not self.folds:
            return np.full((self.epochs, self.n_samples), -1, np.int16)
        per = self._over_data([np.asarray(f.epoch_predictions, np.int16).reshape(
            len(f.kept_epochs), len(f.labels)).T for f in self.folds], -1, np.int16)
        return per.T

    @property
    def features(self) -> np.ndarray | None:
        if not self.folds or self.folds[0].features is None:
            return None
        return self._over_data([np.asarray(f.features, np.float32) for f in self.folds],
                               np.nan, np.float32)

    @property
    def fold_seconds(self) -> dict[str, float]:
        return {f.subject: f.seconds for f in self.folds}

    @property
    def lr(self) -> dict[str, list[float]]:
        return {f.subject: f.history["lr"] for f in self.folds}

    @property
    def lr_steps(self) -> dict[str, list[float]]:
        return {f.subject: f.lr_steps for f in self.folds if f.lr_steps}
