"""``NAME=VALUE`` settings from the command line: the value read as JSON, else as a string
(``block_length=2`` → 2, ``strain=offtanet`` → "offtanet", ``betas=[0.9,0.99]`` → a list)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mefeat.errors import MefeatError


def parse_value(raw: str) -> Any:
    """``raw`` as JSON, else the string itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_assignments(pairs: Iterable[str], *, what: str = "option") -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``; a pair without ``=`` is refused."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise MefeatError(f"--{what} {pair!r}: expected NAME=VALUE")
        out[name] = parse_value(value)
    return out
