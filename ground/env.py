"""Settings from the environment: a frozen dataclass's fields filled from named variables.

Every process reads its settings the same way: each field may be set by one environment variable,
converted with the field's declared type; a variable that is unset keeps the field's default, and
one that cannot be converted raises `ValueError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})


def flag(raw: str | None) -> bool | None:
    """A yes/no variable; unset or empty is None ("not said"), which callers read as a default."""
    if raw is None or raw.strip() == "":
        return None
    return raw.strip().lower() in _TRUE


def _convert(kind: Any, raw: str) -> Any:
    """`raw` as a value of the field type `kind` (str, int, float, bool, an Enum, or X | None)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot read a {kind} from the environment")
        if inner[0] is bool:
            return flag(raw)
        return _convert(inner[0], raw)
    if kind is bool:
        return bool(flag(raw))
    if isinstance(kind, type) and issubclass(kind, Enum | str | int | float):
        return kind(raw)
    raise TypeError(f"cannot read a {kind} from the environment")


def read(
    cls: type[T],
    names: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    **given: Any,
) -> T:
    """An instance of the dataclass `cls`: each field in `names` from its variable when set,
    fields in `given` as given, the rest at their defaults."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = dict(given)
    for name, variable in names.items():
        if name not in known:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        raw = env.get(variable)
        if raw is None:
            continue
        try:
            values[name] = _convert(hints[name], raw)
        except ValueError:
            raise ValueError(f"{variable}={raw!r} is not a valid {name}") from None
    return cls(**values)


def prefixed(cls: type[Any], prefix: str, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """`{field: PREFIX + FIELD}` for every field of the dataclass `cls` but those in `skip`."""
    return {f.name: prefix + f.name.upper() for f in dataclasses.fields(cls) if f.name not in skip}


def whole(variable: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """One integer variable outside a settings dataclass; unset or empty keeps `default`."""
    raw = (os.environ if env is None else env).get(variable, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a whole number") from None
