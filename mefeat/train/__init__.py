"""Training under the field's protocols: LOSO folds, the recipe-driven trainer, epoch
selection policies, metrics and checkpoints (``mefeat.train.checkpoints``)."""

from mefeat.datasets.loso import loso_folds
from mefeat.train.metrics import fold_score, metrics, metrics_table
from mefeat.train.selection import SELECTIONS
from mefeat.train.trainer import LosoResult, TrainingError, fold_seed, train_loso

__all__ = [
    "SELECTIONS",
    "LosoResult",
    "TrainingError",
    "fold_score",
    "fold_seed",
    "loso_folds",
    "metrics",
    "metrics_table",
    "train_loso",
]
