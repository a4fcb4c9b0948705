"""mefeat's model zoo: importing it registers every model (see ``registry``) with its
input view and its training recipe (:mod:`mefeat.recipes`), both declared in the model's own
file."""

from importlib import import_module

from .registry import (
    ModelSpec,
    count_params,
    create_model,
    get_spec,
    list_models,
    register,
    scoped_registry,
)

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
    "ModelSpec",
    "count_params",
    "create_model",
    "get_spec",
    "list_models",
    "register",
    "scoped_registry",
]
