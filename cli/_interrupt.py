"""What an interrupted command says it kept (``mefeat: interrupted: …``)."""

from __future__ import annotations

from collections.abc import Callable

import click


def set_interrupt_note(note: Callable[[], str]) -> None:
    """``note()`` says what the running command kept and how to go on; it is called only if
    the command is interrupted. A command that keeps work sets it first thing, before its
    imports, so that an interrupt at any moment finds it."""
    click.get_current_context().find_root().ensure_object(dict)["interrupt_note"] = note


def kept_note(kind: str, *args) -> Callable[[], str]:
    """A note from :mod:`mefeat.run.kept` (``kind``: run_folder, store or bench), imported
    only when it is needed."""
    def note() -> str:
        from mefeat.run import kept

        return getattr(kept, kind)(*args)
    return note
