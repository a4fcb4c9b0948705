"""Training under the field's protocols: LOSO folds, the trainer, epoch selection, metrics and
checkpoints (``mefeat.train.checkpoints``)."""

from mefeat.train.loso import loso_folds
from mefeat.train.metrics import metrics, metrics_table
from mefeat.train.trainer import SELECTIONS, LosoResult, TrainingError, fold_seed, train_loso

__all__ = [
    "SELECTIONS",
    "LosoResult",
    "TrainingError",
    "fold_seed",
    "loso_folds",
    "metrics",
    "metrics_table",
    "train_loso",
]
