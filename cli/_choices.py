"""Click choices read from mefeat's registries when a command runs, so that the CLI never
types a list by hand and ``mefeat --help`` does not import the heavy libraries."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import click


class RegistryChoice(click.Choice):
    """A ``click.Choice`` whose choices come from ``load()`` (looked up on first use)."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._load())

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns it
        pass


def registry(module: str, name: str) -> Callable[[], Sequence[str]]:
    """``load()`` for the keys (or items) of ``module.name``."""
    def load() -> Sequence[str]:
        value = getattr(importlib.import_module(module), name)
        value = value() if callable(value) else value
        return sorted(value) if isinstance(value, dict) else list(value)
    return load


MODELS = RegistryChoice(registry("mefeat.models", "list_models"))
READERS = RegistryChoice(registry("mefeat.datasets", "list_readers"))
SCHEMES = RegistryChoice(registry("mefeat.datasets.labels", "SCHEMES"))
FLOWS = RegistryChoice(registry("mefeat.flow.methods", "FLOW_METHODS"))
SPOTTERS = RegistryChoice(registry("mefeat.keyframes.spotting", "SPOT_METHODS"))
SELECTIONS = RegistryChoice(registry("mefeat.recipes.selection", "SELECTIONS"))
PRECISIONS = RegistryChoice(registry("mefeat.recipes.loss", "PRECISIONS"))
EXECUTORS = RegistryChoice(registry("mefeat.executors", "EXECUTORS"))
IMPORT_FORMATS = RegistryChoice(registry("mefeat.datasets.official", "FORMATS"))
EXPORT_FORMATS = RegistryChoice(lambda: ["h5", *registry("mefeat.run.export_official",
                                                         "EXPORT_FORMATS")()])


class LazyHelpOption(click.Option):
    """An option whose help text is made by ``help_from()`` when help is shown."""

    def __init__(self, *args, help_from: Callable[[], str], **kwargs) -> None:
        self._help_from = help_from
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context):
        self.help = self._help_from()
        return super().get_help_record(ctx)


def keyframes_help() -> str:
    from mefeat.keyframes import policy_help

    return f"Key-frame policy: {policy_help()} (repeatable; each makes a variant)."


def conditions_help() -> str:
    from mefeat.keyframes import bench_columns

    cols = bench_columns()
    return ("Comma-separated key-frame conditions (Table 4 columns): "
            + ", ".join(f"{name} ({c.label})" for name, c in cols.items())
            + " [default: all]")
