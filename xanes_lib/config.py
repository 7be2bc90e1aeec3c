"""The configuration scheme of the package: frozen dataclasses validated on construction.

Every configuration (simulation, phantom, network, training, adaptation) derives from
:class:`Config`: it checks its values when it is made (ranges, choices; the error names the
field, the value and what is allowed) and converts to and from plain dictionaries with one
pair of methods (:meth:`Config.to_dict`, :meth:`Config.from_dict`), nested configurations
included. Unknown keys are rejected with the list of allowed ones.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass

__all__ = ["Config"]


def _convert(value, hint):
    """Convert a plain value read from a dictionary to the field type ``hint``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:  # None, or a union the field's check resolves
            return value
        hint = options[0]
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_convert(v, inner) if isinstance(v, list) else v for v in value)
    return value


def _plain(value):
    """Return the dictionary form of a field value (nested configs as dicts, tuples as lists)."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Config:
    """Base of the configuration dataclasses: validation, dictionaries, replacement.

    Subclasses declare their fields and implement :meth:`_check`, which raises ValueError
    for a value out of range; it runs on construction (also through :meth:`from_dict` and
    :meth:`replace`).
    """

    def __post_init__(self):
        self._check()

    def _check(self) -> None:
        """Raise ValueError for a value out of range (subclasses)."""

    def _require(self, ok: bool, name: str, allowed: str) -> None:
        """Raise ValueError naming the field, its value and what is allowed, unless ``ok``."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name} must be {allowed}; got {getattr(self, name)!r}.")

    def _positive_ints(self, *names: str, minimum: int = 1) -> None:
        for name in names:
            v = getattr(self, name)
            self._require(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum, name,
                          f"an integer >= {minimum}")

    def _finite(self, name: str, lo: float = -math.inf, hi: float = math.inf, *, open_lo: bool = False,
                open_hi: bool = False) -> None:
        v = getattr(self, name)
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
        if math.isinf(lo) and math.isinf(hi):
            bound = ""
        elif math.isinf(hi):
            bound = f" {'>' if open_lo else '>='} {lo:g}"
        elif math.isinf(lo):
            bound = f" {'<' if open_hi else '<='} {hi:g}"
        else:
            bound = f" in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        self._require(ok, name, f"a finite number{bound}")

    def _range(self, name: str, lo: float = -math.inf, hi: float = math.inf) -> None:
        v = getattr(self, name)
        ok = (isinstance(v, tuple) and len(v) == 2
              and all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in v)
              and lo <= v[0] <= v[1] <= hi)
        self._require(ok, name, f"a pair (lo, hi) with {lo:g} <= lo <= hi <= {hi:g}")

    def _int_range(self, name: str) -> None:
        v = getattr(self, name)
        ok = (isinstance(v, tuple) and len(v) == 2
              and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1 for x in v)
              and v[0] <= v[1])
        self._require(ok, name, "a pair of integers (lo, hi) with 1 <= lo <= hi")

    def to_dict(self) -> dict:
        """Plain dictionary (nested configurations as dictionaries, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError listing the allowed ones."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict; got {type(d).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; allowed: {names}.")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _convert(v, hints[k]) for k, v in d.items()})

    def replace(self, **changes):
        """Return a copy with some fields changed (validated like a new configuration)."""
        return dataclasses.replace(self, **changes)
