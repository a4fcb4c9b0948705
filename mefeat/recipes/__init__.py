"""Training recipes: how each model's paper trains it, in one vocabulary, and how each part
of a recipe runs.

- :mod:`~mefeat.recipes.recipe`: the :class:`Recipe` record and its JSON form;
- :mod:`~mefeat.recipes.optim`: the optimizer and the learning-rate schedules;
- :mod:`~mefeat.recipes.batches`: batch sizes and the class-balanced sampler;
- :mod:`~mefeat.recipes.augment`: train-time augmentation;
- :mod:`~mefeat.recipes.loss`: the losses and the numeric precision;
- :mod:`~mefeat.recipes.jitter`: training-time key-frame jitter;
- :mod:`~mefeat.recipes.selection`: epoch-selection rules and policies.

Schedules, augmentations, losses and selection kinds are registries of small named parts:
adding one is one class or function in its module and its test.
"""

from .augment import AUGMENTATIONS, HorizontalFlip, RandomCrop, Rotation
from .batches import ClassBalancedSampler, Oversample
from .jitter import KeyframeJitter
from .loss import LOSSES, PRECISIONS
from .optim import SCHEDULES, ExponentialLR, Optimizer, StepLR, WarmupCosine
from .parts import RecipeError
from .recipe import Recipe
from .selection import SELECTIONS, Selection

__all__ = [
    "AUGMENTATIONS",
    "LOSSES",
    "PRECISIONS",
    "SCHEDULES",
    "SELECTIONS",
    "ClassBalancedSampler",
    "ExponentialLR",
    "HorizontalFlip",
    "KeyframeJitter",
    "Optimizer",
    "Oversample",
    "RandomCrop",
    "Recipe",
    "RecipeError",
    "Rotation",
    "Selection",
    "StepLR",
    "WarmupCosine",
]
