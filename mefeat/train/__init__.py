"""Training under the field's protocols: a :class:`TrainPlan` (what to train), the LOSO
trainer (:func:`train_loso`, :func:`run_plan`), the run folder that streams each fold's
result and checkpoint (:mod:`~mefeat.train.run_folder`), and the results
(:class:`LosoResult`)."""

from mefeat.datasets.loso import loso_folds
from mefeat.train.context import fold_seed
from mefeat.train.data import StoreView, load_view
from mefeat.train.errors import TrainingError
from mefeat.train.plan import TrainPlan
from mefeat.train.result import FoldResult, LosoResult
from mefeat.train.run_folder import RunFolder, RunRecord, folder_results
from mefeat.train.trainer import make_record, run_plan, train_loso

__all__ = [
    "FoldResult",
    "LosoResult",
    "RunFolder",
    "RunRecord",
    "StoreView",
    "TrainPlan",
    "TrainingError",
    "fold_seed",
    "folder_results",
    "load_view",
    "loso_folds",
    "make_record",
    "run_plan",
    "train_loso",
]
