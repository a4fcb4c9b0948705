"""mefeat's model zoo: importing it registers every model (see ``registry``) with its
training recipe (see ``recipe``)."""

from importlib import import_module

from .recipe import (
    ClassBalancedSampler,
    ExponentialLR,
    HorizontalFlip,
    KeyframeJitter,
    Optimizer,
    RandomCrop,
    Recipe,
    RecipeError,
    Rotation,
    Selection,
    StepLR,
    WarmupCosine,
)
from .registry import ModelSpec, count_params, create_model, get_spec, list_models, register

# Every model file of the zoo; a missing one is an error, not a smaller zoo.
MODEL_FILES = (
    "causalnet",
    "htnet",
    "ststnet",
    "offapexnet",
    "dual_inception",
    "micro_attention",
    "offtanet",
    "mmnet",
    "srmcl",
    "edmdbn",
)

for _name in MODEL_FILES:
    import_module(f"{__name__}.{_name}")

__all__ = [
    "MODEL_FILES",
    "ClassBalancedSampler",
    "ExponentialLR",
    "HorizontalFlip",
    "KeyframeJitter",
    "ModelSpec",
    "Optimizer",
    "RandomCrop",
    "Recipe",
    "RecipeError",
    "Rotation",
    "Selection",
    "StepLR",
    "WarmupCosine",
    "count_params",
    "create_model",
    "get_spec",
    "list_models",
    "register",
]
