"""The model registry: one name, one builder, its paper settings and the inputs it eats.

A model file registers a builder with ``@register("name", ...)``; importing
``mefeat.models`` imports every model file, so all of them are registered. User code
registers its own model with the same decorator and ``mefeat train`` picks it up.

Every registered module follows one interface (as timm's models do):
``forward_features(x) -> Tensor``, ``forward_head(features) -> logits``,
``forward(x) = forward_head(forward_features(x))`` and ``reset_classifier(num_classes)``.
``x`` is one tensor, or a tuple of tensors for models with several inputs, exactly as the
model's view (``mefeat.views``) produces it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mefeat.errors import ModelError

from .recipe import Recipe, check_recipe


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: registry key.
        builder: ``builder(num_classes=..., **kwargs) -> nn.Module``.
        view: name of the view in ``mefeat.views`` that turns store arrays into the
            model's input.
        input_shapes: the shape of one sample's input(s) without the batch axis, one tuple
            per input tensor (used by tests and ``mefeat models``).
        recipe: how the paper / official script trains it (``mefeat.models.recipe``);
            every field is executed by ``mefeat.train``.
        paper: citation and arXiv id / DOI.
        code: official code location and its licence.
        params: parameter count of the official 3-class configuration.
        options: builder keyword arguments exposed for ablations, with defaults.
        channels_last: train on the CPU in channels-last memory format (model and 4-D
            inputs), where that was measured faster (it is slower for some models, e.g.
            STSTNet's batch norm); the numbers are the same up to rounding.
    """

    name: str
    builder: Callable[..., nn.Module]
    view: str
    input_shapes: tuple[tuple[int, ...], ...]
    recipe: Recipe | None = None
    paper: str = ""
    code: str = ""
    params: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 3
    channels_last: bool = False

    @property
    def inputs(self) -> dict[str, Any]:
        return {"view": self.view, "shapes": [list(s) for s in self.input_shapes]}


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    view: str,
    input_shapes: tuple[tuple[int, ...], ...],
    recipe: Recipe | Mapping[str, Any] | None = None,
    paper: str = "",
    code: str = "",
    params: int | None = None,
    options: dict[str, Any] | None = None,
    num_classes: int = 3,
    channels_last: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under ``name`` (see ``ModelSpec`` for the fields).

    ``recipe`` is a :class:`~mefeat.models.recipe.Recipe` or its plain-dict form
    (``Recipe.from_dict``); a field or value that the trainer cannot execute is refused here,
    with the model's name and the field. A model registered without one can be evaluated
    from checkpoints; training it needs a recipe (``train_loso(recipe=...)``).
    """
    from mefeat.views import VIEWS

    known_view = VIEWS.get(view)
    checked = None if recipe is None else check_recipe(
        name, recipe, jitter_view=bool(known_view and known_view.jitter))

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ModelError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            view=view,
            input_shapes=tuple(tuple(s) for s in input_shapes),
            recipe=checked,
            paper=paper,
            code=code,
            params=params,
            options=dict(options or {}),
            num_classes=num_classes,
            channels_last=channels_last,
        )
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_zoo()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` of ``name``; a clear error lists the known names."""
    _import_zoo()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, *, num_classes: int | None = None, **options: Any) -> nn.Module:
    """Build model ``name`` with its paper defaults, overridden by ``options``."""
    spec = get_spec(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ModelError(
            f"model {name!r} has no option(s) {sorted(unknown)}; "
            f"its options are {sorted(spec.options)}"
        )
    kwargs = {**spec.options, **options}
    return spec.builder(num_classes=num_classes or spec.num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _import_zoo() -> None:
    # Importing the package registers every model file; done lazily so that importing
    # the registry alone stays cheap.
    import mefeat.models  # noqa: F401
