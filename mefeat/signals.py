"""Interrupts (Ctrl-C's SIGINT, a scheduler's SIGTERM) that never cut a write in half.

``mefeat`` turns SIGTERM into :class:`Terminated` (as Python turns SIGINT into
``KeyboardInterrupt``), so both stop a command the same way; a group of writes that must
land together (a sample's arrays and its status, a batch of imported samples) runs inside
:func:`deferred_interrupts`, which holds a signal that arrives meanwhile until the group is
written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt)
    """SIGTERM arrived (a scheduler, ``kill``): stop as on Ctrl-C."""


def raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them as usual. (Python runs
    signal handlers in the main thread; elsewhere the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in held[:1]:
            handler = previous[s]
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), s)
