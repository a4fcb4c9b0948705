"""The registry behind every named part of a recipe (schedules, augmentations, losses,
selection kinds): a part is a frozen dataclass with a ``name``; its record is
``{"name": ..., **fields}``, and a registry turns the record back into the part.

Adding a part is one class (or function) registered here and its test; nothing else names
it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from mefeat.errors import ModelError


class RecipeError(ModelError):
    """A recipe the trainer cannot run (an unknown field, part or value)."""


def need(ok: bool, what: str) -> None:
    """Raise :class:`RecipeError` with ``what`` unless ``ok``."""
    if not ok:
        raise RecipeError(what)


T = TypeVar("T")


class Registry(Generic[T]):
    """Named parts of one kind (``what``: "schedule", "augmentation"...)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.parts: dict[str, T] = {}

    def register(self, part: T) -> T:
        """Decorator: register a part under its ``name`` attribute."""
        name = part.name  # type: ignore[attr-defined]
        need(name not in self.parts, f"{self.what} {name!r} is registered twice")
        self.parts[name] = part
        return part

    def __getitem__(self, name: str) -> T:
        try:
            return self.parts[name]
        except KeyError:
            raise RecipeError(f"{self.what} {name!r} is not one of {sorted(self.parts)}") \
                from None

    def __contains__(self, name: object) -> bool:
        return name in self.parts

    def names(self) -> list[str]:
        return sorted(self.parts)

    def from_record(self, record: Any) -> Any:
        """The part of a ``{"name": ..., **fields}`` record (a part is returned as it is)."""
        if record is None or not isinstance(record, Mapping):
            return record
        args = dict(record)
        kind = self[args.pop("name", None)]
        try:
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
        except TypeError as exc:
            raise RecipeError(f"{self.what} {kind.name!r}: {exc}") from None


def record(part: Any) -> dict[str, Any] | None:
    """A part's JSON-able record: ``{"name": ..., **fields}`` (tuples as lists)."""
    if part is None:
        return None
    out: dict[str, Any] = {"name": part.name} if hasattr(part, "name") and not any(
        f.name == "name" for f in dataclasses.fields(part)) else {}
    for f in dataclasses.fields(part):
        v = getattr(part, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out

