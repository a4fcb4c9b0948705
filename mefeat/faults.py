"""Deterministic fault points: named places in the writers where a test can stop a run.

Every write step of the store's writer (and of bench's job writer) calls ``fault(point)``
first. Nothing happens unless a point is armed, either in this process::

    with armed("sample:flow_oa:after", at=3):   # the 3rd time that point is reached
        extract(...)                            # raises InjectedFault there

or, for a real crash of a subprocess, through the environment variable
``MEFEAT_FAULT=POINT[@N][:kill]`` (``:kill`` sends the process SIGKILL at that point, as
the OOM killer would; without it an :class:`InjectedFault` is raised). ``recording()``
lists the points a run reaches, so a test can stop a run at every one of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

ENV = "MEFEAT_FAULT"


class InjectedFault(RuntimeError):
    """Raised at an armed fault point (a stand-in for a crash)."""


class _State:
    point: str | None = None
    at: int = 1
    kill: bool = False
    count: int = 0
    env_read: bool = False
    log: list[str] | None = None


_STATE = _State()


def _parse(spec: str) -> tuple[str, int, bool]:
    kill = spec.endswith(":kill")
    spec = spec[: -len(":kill")] if kill else spec
    point, _, at = spec.partition("@")
    return point, int(at or 1), kill


def fault(point: str) -> None:
    """Stop here if ``point`` is armed and reached for the armed time."""
    s = _STATE
    if not s.env_read:
        s.env_read = True
        if os.environ.get(ENV) and s.point is None:
            s.point, s.at, s.kill = _parse(os.environ[ENV])
    if s.log is not None:
        s.log.append(point)
    if s.point != point:
        return
    s.count += 1
    if s.count != s.at:
        return
    if s.kill:
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault injected at {point} (time {s.at})")


@contextlib.contextmanager
def armed(point: str, *, at: int = 1, kill: bool = False) -> Iterator[None]:
    """Arm ``point`` (its ``at``-th arrival) in this process for the block."""
    s = _STATE
    s.point, s.at, s.kill, s.count = point, at, kill, 0
    try:
        yield
    finally:
        s.point, s.count = None, 0


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """The points reached inside the block, in order (repeats included)."""
    s = _STATE
    s.log = []
    try:
        yield s.log
    finally:
        s.log = None
