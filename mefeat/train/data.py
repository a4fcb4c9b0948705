"""A model's training data: :func:`load_view` reads a model's view of a store variant
(``mefeat.load_view``), :class:`StoreView` names one so that every process that trains
folds reads it itself (once per process) instead of receiving the arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mefeat.views.data import ViewData, read_view


def load_view(store: str | os.PathLike, model: str, *, variant: str | None = None,
              options: dict[str, Any] | None = None) -> ViewData:
    """The inputs of ``model``'s view of a store variant, with labels, subjects, keys and
    classes (one bulk read per array).

    ``variant``: default the store's only variant, else ``gt``; ``options``: the view's
    named choices (e.g. ``{"strain": "offtanet"}``). A model whose recipe jitters its key
    frames also gets the frames its training draws may take (``ViewData.jitter``).

    Example::

        import mefeat
        data = mefeat.load_view("casme2.zarr", "ststnet", variant="gt")
        dataset, folds = data.torch_dataset(), data.folds()
    """
    from mefeat.models import get_spec

    spec = get_spec(model)
    return read_view(store, spec.view, variant=variant, options=options,
                     jitter=spec.recipe and spec.recipe.keyframe_jitter)


@dataclass(frozen=True)
class StoreView:
    """A model's view of a store variant, read where the folds train (picklable)."""

    store: str
    model: str
    variant: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def load(self) -> ViewData:
        key = (self.store, self.model, self.variant, self.options)
        if key not in _READ:
            _READ.clear()  # one view per process at a time: they can be large
            _READ[key] = load_view(self.store, self.model, variant=self.variant,
                                   options=dict(self.options))
        return _READ[key]


_READ: dict[tuple, ViewData] = {}
