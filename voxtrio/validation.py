"""Checking a value where it is given, naming it when it is wrong.

A wrong value passed to a public method or an option must fail at that call,
with a ``TypeError`` (wrong kind of value) or a ``ValueError`` (right kind,
impossible value) that names the argument, rather than be accepted and crash
an actor later, far from the mistake. The session's methods, the options and
the provider events all use these few checks, so the messages read alike.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_type(value: Any, types: type | tuple[type, ...], name: str, what: str) -> Any:
    """``value`` if it is an instance of ``types`` (never a bool standing in for a number)."""
    wanted = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
        raise TypeError(f"{name} must be {what}, got {_shown(value)}")
    return value


def check_bool(value: Any, name: str) -> bool:
    return check_type(value, bool, name, "True or False")  # type: ignore[no-any-return]


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    optional: bool = False,
    finite: bool = False,
) -> float | None:
    """A real number in ``[minimum, maximum]`` (``None`` too when ``optional``);
    never NaN, and not infinite either when ``finite``."""
    if value is None and optional:
        return None
    check_type(value, (int, float), name, "a number" + (" or None" if optional else ""))
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if math.isnan(value) or not minimum <= value <= maximum:
        if maximum < math.inf:
            bound = f" between {minimum:g} and {maximum:g}"
        else:
            bound = f" >= {minimum:g}" if minimum > -math.inf else ""
        raise ValueError(f"{name} must be a number{bound}, got {value!r}")
    return value  # type: ignore[no-any-return]


def check_int(value: Any, name: str, *, minimum: int = 0, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    check_type(value, int, name, "an integer" + (" or None" if optional else ""))
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value  # type: ignore[no-any-return]


def check_str(value: Any, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    return check_type(value, str, name, "a string" + (" or None" if optional else ""))  # type: ignore[no-any-return]


def check_choice(value: Any, name: str, *, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {_shown(value)}")
    return value


def check_async_iterable(
    value: Any, name: str, *, optional: bool = False, what: str = "an async iterable"
) -> Any:
    if value is None and optional:
        return None
    if not hasattr(value, "__aiter__"):
        raise TypeError(f"{name} must be {what}{' or None' if optional else ''}, got {_shown(value)}")
    return value


def field_check(check: Callable[..., Any], **limits: Any) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator running ``check(value, field name, **limits)``."""

    def validate(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        check(value, attribute.name, **limits)

    return validate
