"""The error of bad training inputs or options."""

from mefeat.errors import MefeatError


class TrainingError(MefeatError):
    """Bad training inputs or options (shapes, labels, folds, selection, a run folder that
    holds another run...)."""
