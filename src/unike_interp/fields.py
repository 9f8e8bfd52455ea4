"""Values checked against a dataclass's field types before anything runs.

``--set v_steps=2.5`` or ``cases = "ten"`` in a config file should fail at once, naming the key,
the value and the type it needs, not deep inside an editor after the model has loaded.
:func:`check_types` reads the field annotations (``int``, ``float``, ``bool``, ``str``,
``list[int]``, ``list[str]``, ``dict``, and any of them ``| None``) and raises :class:`FieldTypeError`
(a ``ValueError``) on the first value that does not fit. Ranges stay with each dataclass's
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping


_EXAMPLE = {int: "[1, 2]", float: "[0.5, 1.0]", str: '["a {}"]'}


_UNION = getattr(types, "UnionType", typing.Union)  # X | Y (Python >= 3.10)


class FieldTypeError(ValueError):
    """A value of the wrong type for a field; the message names source, key, value and type."""


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, _UNION):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null (unset)" if type(None) in args else "")
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(args[0], _describe(args[0]))}, e.g. {_EXAMPLE.get(args[0], '[...]')}" if args else "a list"
    if origin is dict or tp is dict:
        return "a table (key = value pairs)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _fits(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, _UNION):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if origin is list:
        if args and args[0] is str and isinstance(value, str):
            return True  # one string where a list of strings goes: the dataclasses take it as a list of one
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # a type this checker does not know: left to the dataclass


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_types(cls: type, values: Mapping[str, Any], *, source: str) -> None:
    """Raise :class:`FieldTypeError` for the first ``values[key]`` that does not fit ``cls``'s field
    ``key`` (unknown keys are the caller's to refuse). ``source``: where the values came from
    (``--set``, a file's path), put first in the message."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names or key not in hints:
            continue
        tp = hints[key]
        if not _fits(value, tp):
            hint = ""
            if isinstance(value, str) and _fits(0, tp) and _numeric(value):
                hint = " (a number is written without quotes)"
            raise FieldTypeError(f"{source}: {key}={value!r} is {type(value).__name__ if value is not None else 'null'}; "
                                 f"{key} takes {_describe(tp)}{hint}")
