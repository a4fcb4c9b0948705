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

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mefeat.errors import ModelError
from mefeat.options import Option, as_option
from mefeat.recipes import Recipe
from mefeat.recipes.recipe import check_recipe
from mefeat.views import InputProfile, View


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: registry key.
        builder: ``builder(num_classes=..., **kwargs) -> nn.Module``.
        view: the :class:`~mefeat.views.View` that turns store arrays into the model's
            input, declared in the model's file.
        input_shapes: the shape of one sample's input(s) without the batch axis, one tuple
            per input tensor (used by tests and ``mefeat models``).
        recipe: how the paper / official script trains it (:mod:`mefeat.recipes`);
            every field is executed by ``mefeat.train``.
        paper: citation and arXiv id / DOI.
        code: official code location and its licence.
        params: parameter count of the official 3-class configuration (``mefeat models``
            prints it without building the network; a test checks it against the built
            model).
        options: builder keyword arguments exposed for ablations, with defaults;
            ``option_specs`` their declared types and ranges (:class:`~mefeat.options.Option`),
            against which :meth:`check_options` checks a value before anything is built.
        channels_last: train on the CPU in channels-last memory format (model and 4-D
            inputs), where that was measured faster (it is slower for some models, e.g.
            STSTNet's batch norm); the numbers are the same up to rounding.
        official_inputs: the inputs the official code makes (:class:`~mefeat.views.
            InputProfile`), which ``--selection official`` trains on; ``None``: the
            default view is the official input.
        deviations: what the official training does that mefeat does not, each with why
            (weights or code that are not published, inputs the store does not keep);
            every run of the model carries them among its warnings.
    """

    name: str
    builder: Callable[..., nn.Module]
    view: View
    input_shapes: tuple[tuple[int, ...], ...]
    recipe: Recipe | None = None
    paper: str = ""
    code: str = ""
    params: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    option_specs: dict[str, Option] = field(default_factory=dict)
    num_classes: int = 3
    channels_last: bool = False
    official_inputs: InputProfile | None = None
    deviations: tuple[str, ...] = ()

    @property
    def inputs(self) -> dict[str, Any]:
        return {"view": self.view.name, "shapes": [list(s) for s in self.input_shapes]}

    def check_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``given`` options checked against their declared types and ranges (converted
        where an int stands for a float); an unknown name or a value not allowed is refused
        with one line naming the option, the value and what is allowed."""
        given = dict(given or {})
        unknown = set(given) - set(self.options)
        if unknown:
            raise ModelError(
                f"model {self.name!r} has no option(s) {sorted(unknown)}; its options are "
                f"{sorted(self.options)}")
        owner = f"model {self.name!r}"
        return {k: self.option_specs.get(k, as_option(self.options[k])).check(k, v, owner=owner)
                for k, v in given.items()}

    def count_params(self) -> int:
        """The parameter count of the default configuration: ``params`` where the spec
        records it, else counted on a network built on the meta device (no memory)."""
        if self.params is not None:
            return self.params
        import torch

        with torch.device("meta"):
            return count_params(create_model(self.name))


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    view: View | str,
    input_shapes: tuple[tuple[int, ...], ...],
    recipe: Recipe | Mapping[str, Any] | None = None,
    paper: str = "",
    code: str = "",
    params: int | None = None,
    options: dict[str, Any] | None = None,
    num_classes: int = 3,
    channels_last: bool = False,
    official_inputs: InputProfile | None = None,
    deviations: Sequence[str] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under ``name`` (see ``ModelSpec`` for the fields).

    ``view`` is a :class:`~mefeat.views.View`, or the name of a registered model whose view
    this one eats. ``recipe`` is a :class:`~mefeat.recipes.Recipe` or its plain-dict form
    (``Recipe.from_dict``); a field or value that the trainer cannot execute is refused here,
    with the model's name and the field. A model registered without one can be evaluated
    from checkpoints; training it needs a recipe (``train_loso(recipe=...)``).
    """
    if isinstance(view, str):
        view = get_spec(view).view
    if not isinstance(view, View):
        raise ModelError(f"model {name!r}: view must be a mefeat.views.View or the name of a "
                         f"registered model, got {type(view).__name__}")
    checked = None if recipe is None else check_recipe(name, recipe,
                                                      jitter_view=view.jitter is not None)

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
            options={k: as_option(v).default for k, v in (options or {}).items()},
            option_specs={k: as_option(v) for k, v in (options or {}).items()},
            num_classes=num_classes,
            channels_last=channels_last,
            official_inputs=official_inputs,
            deviations=tuple(deviations),
        )
        return builder

    return decorator


@contextlib.contextmanager
def scoped_registry() -> Iterator[None]:
    """Models registered inside the ``with`` block are gone after it (tests register their
    stub models here, so that no test changes what another one sees)."""
    _import_zoo()
    saved = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)


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
    kwargs = {**spec.options, **spec.check_options(options)}
    return spec.builder(num_classes=num_classes or spec.num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _import_zoo() -> None:
    # Importing the package registers every model file; done lazily so that importing
    # the registry alone stays cheap.
    import mefeat.models  # noqa: F401
