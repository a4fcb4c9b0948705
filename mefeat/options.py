"""Named settings: ``NAME=VALUE`` from the command line (the value read as JSON, else as a
string: ``block_length=2`` → 2, ``strain=offtanet`` → "offtanet", ``betas=[0.9,0.99]`` → a
list), and :class:`Option`, the declared type and range of a model's option, against which
every value is checked before anything is built."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mefeat.errors import MefeatError, ModelError


class OptionError(ModelError):
    """A value an option does not allow."""


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


@dataclass(frozen=True)
class Option:
    """An option's default and what it allows.

    The type is the default's (``bool``, ``int``, ``float``, ``str``, or a tuple whose items
    have the type of the default's first item), or ``kind``; ``None`` is allowed where the
    default is ``None`` or ``nullable``. ``choices`` lists the allowed values; ``low`` /
    ``high`` bound a number (or each item of a tuple), inclusive unless ``low_open`` /
    ``high_open``.
    An int is a float where a float is asked for; nothing else is converted.
    """

    default: Any
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: type | None = None
    nullable: bool = False

    @property
    def type(self) -> type:
        if self.kind is not None:
            return self.kind
        if isinstance(self.default, (tuple, list)):
            return tuple
        return type(self.default)

    @property
    def item_type(self) -> type | None:
        if isinstance(self.default, (tuple, list)) and self.default:
            return type(self.default[0])
        return None

    def describe(self) -> str:
        """What the option allows, in words (``an int >= 1``, ``one of 'a', 'b'``)."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        names = {bool: "true or false", int: "an int", float: "a number", str: "a string"}
        if self.type is tuple:
            plural = {bool: "booleans", int: "ints", float: "numbers", str: "strings"}
            base = f"a list of {plural.get(self.item_type, 'values')}"
            if self.low is not None or self.high is not None:
                base += ", each"
        else:
            base = names.get(self.type, self.type.__name__)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = base + (" " + " and ".join(parts) if parts else "")
        return text + (" (or null)" if self.default is None or self.nullable else "")

    def check(self, name: str, value: Any, *, owner: str) -> Any:
        """``value`` as the option's type, or :class:`OptionError` naming the option, the
        value and what is allowed."""
        def refuse() -> OptionError:
            return OptionError(f"{owner}: option {name}={value!r} is not allowed; {name} is "
                               f"{self.describe()}")

        if value is None and (self.default is None or self.nullable):
            return None
        if self.choices is not None:
            if value not in self.choices or isinstance(value, bool) != isinstance(
                    self.choices[0], bool):
                raise refuse()
            return value
        if self.type is tuple:
            if not isinstance(value, (list, tuple)) or not value:
                raise refuse()
            items = tuple(self._scalar(v, self.item_type, refuse) for v in value)
            return items
        return self._scalar(value, self.type, refuse)

    def _scalar(self, value: Any, kind: type | None, refuse) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise refuse()
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise refuse()
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise refuse()
            value = float(value)
        elif kind is not None and not isinstance(value, kind):
            raise refuse()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise refuse()
        if self.high is not None and (value > self.high
                                      or (self.high_open and value == self.high)):
            raise refuse()
        return value


def as_option(value: Any) -> Option:
    """An :class:`Option` as it is, or a plain default as an option of its type."""
    return value if isinstance(value, Option) else Option(value)


# The ranges most models' options share.
def positive_int(default: int) -> Option:
    return Option(default, low=1)


def fraction(default: float) -> Option:
    """A probability of dropping: [0, 1)."""
    return Option(default, low=0, high=1, high_open=True)
