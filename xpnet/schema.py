"""A small schema for JSON data read back from files: what each field must hold.

A :class:`Field` says which values are valid (``test``) and describes them
(``expected``); :func:`problem` walks a value against it and says, in one line, what
is wrong with the first bad field (``field run.batch_size is "100", expected an integer
>= 1``), or returns None. :mod:`xpnet.checkpoint` checks a checkpoint's metadata with it,
so that a malformed file is one clear error instead of a ``KeyError`` later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Field:
    """What one metadata field must hold: a tiny JSON schema.

    ``test`` accepts the valid values, which ``expected`` describes ("an integer >= 0").
    A ``required`` field must be present. ``fields`` are the fields of an object value
    (or a function of the value giving them); ``each`` is what every item of a list is.
    """

    test: Callable[[Any], bool]
    expected: str
    required: bool = False
    fields: Mapping[str, Field] | Callable[[Any], Mapping[str, Field]] | None = None
    each: Field | None = None


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (a Python ``int`` or ``float``, not a ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(minimum: int = 0, *, required: bool = False) -> Field:
    """An integer ``>= minimum`` (not a bool)."""
    return Field(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        f"an integer >= {minimum}",
        required,
    )


def number(minimum: float = 0.0, *, required: bool = False) -> Field:
    """A finite number ``>= minimum``."""
    return Field(
        lambda v: is_number(v) and (isinstance(v, int) or math.isfinite(v)) and v >= minimum,
        f"a finite number >= {minimum:g}",
        required,
    )


def string(*, required: bool = False) -> Field:
    """Any string."""
    return Field(lambda v: isinstance(v, str), "a string", required)


def one_of(choices: Iterable[Any], *, required: bool = False) -> Field:
    """One of ``choices`` (strings, say)."""
    allowed = tuple(choices)
    return Field(
        lambda v: v in allowed,
        f"one of {', '.join(json.dumps(c) for c in allowed)}",
        required,
    )


def nullable(field: Field) -> Field:
    """``field``, or ``null``."""
    return replace(
        field, test=lambda v: v is None or field.test(v), expected=f"{field.expected} or null"
    )


def json_object(
    fields: Mapping[str, Field] | Callable[[Any], Mapping[str, Field]] | None = None,
    *,
    required: bool = False,
) -> Field:
    """A JSON object, whose ``fields`` are checked when present."""
    return Field(lambda v: isinstance(v, dict), "a JSON object", required, fields)


def list_of(item: Field, *, min_length: int = 0, required: bool = False) -> Field:
    """A list of ``min_length`` or more items, each an ``item``."""
    size = f" of {min_length} or more items" if min_length else ""
    return Field(
        lambda v: isinstance(v, list) and len(v) >= min_length,
        f"a list{size}, each item {item.expected}",
        required,
        each=item,
    )


def problem(value: Any, field: Field, name: str) -> str | None:
    """What is wrong with ``value`` (called ``name``) against ``field``, or None.

    Object fields are named by their key (``epoch``), deeper ones by their path
    (``run.batch_size``, ``history.loss[2]``).
    """
    return _problem(value, field, name, "")


def _problem(value: Any, field: Field, name: str, prefix: str) -> str | None:
    if not field.test(value):
        return f"field {name} is {show(value)}, expected {field.expected}"
    if value is None:
        return None
    if field.each is not None:
        for k, item in enumerate(value):
            found = _problem(item, field.each, f"{name}[{k}]", f"{name}[{k}].")
            if found:
                return found
    children = field.fields(value) if callable(field.fields) else field.fields or {}
    for key, child in children.items():
        if key in value:
            found = _problem(value[key], child, f"{prefix}{key}", f"{prefix}{key}.")
            if found:
                return found
        elif child.required:
            return f"field {prefix}{key} is missing, expected {child.expected}"
    return None


def show(value: Any, limit: int = 60) -> str:
    """``value`` as JSON, shortened to about ``limit`` characters."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."
