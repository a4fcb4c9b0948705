"""mefeat's model zoo: importing it registers every model (see ``registry``)."""

from importlib import import_module

from .registry import ModelSpec, count_params, create_model, get_spec, list_models, register

_MODEL_FILES = (
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

for _name in _MODEL_FILES:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a model file not written yet
        if exc.name != f"{__name__}.{_name}":
            raise

__all__ = ["ModelSpec", "count_params", "create_model", "get_spec", "list_models", "register"]
