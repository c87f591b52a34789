"""Typed reading of parsed JSON into (nested, frozen) dataclasses, driven by their annotations.

A file format written as dataclasses (e.g. :mod:`.manifest`) is read back with one call, and every
wrong or missing value raises :class:`JsonShapeError` naming its key path (``graphs.decoder.files``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints


class JsonShapeError(ValueError):
    """A JSON value does not have the type its dataclass field declares; the message names the key path."""


def read_typed(kind: Any, value: Any, path: str) -> Any:
    """``value`` (parsed JSON) as an instance of the annotation ``kind``, checked all the way down.

    Handles the annotations dataclasses of a file format use: dataclasses, ``X | None``, ``int | str``,
    ``tuple[X, ...]``, fixed tuples, ``dict[str, X]``, ``Any`` and the scalars. ``bool`` never passes as
    a number; an ``int`` passes where a ``float`` is asked.
    """
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return read_dataclass(kind, value, path)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return read_typed(option, value, path)
            except JsonShapeError:
                continue
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    if origin is tuple:
        if not isinstance(value, list):
            raise JsonShapeError(f"field {path!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(read_typed(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise JsonShapeError(f"field {path!r} must hold {len(args)} values")
        return tuple(read_typed(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise JsonShapeError(f"field {path!r} must be a JSON object")
        return {k: read_typed(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # resolves the string annotations of ``from __future__ import annotations``


def read_dataclass(cls: type, value: Any, path: str) -> Any:
    """A dataclass from a JSON object: every field by its annotation; a missing or null field with a
    default takes it; keys the dataclass does not know are ignored, and so are fields whose metadata
    says ``{"serialized": False}`` (they keep their default)."""
    if not isinstance(value, Mapping):
        raise JsonShapeError(f"field {path!r} must be a JSON object" if path else "must be a JSON object")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("serialized", True):
            continue
        key = f"{path}.{f.name}" if path else f.name
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        optional = type(None) in get_args(hints[f.name])
        if f.name not in value or (value[f.name] is None and not optional):
            if has_default:
                continue
            if f.name not in value:
                raise JsonShapeError(f"lacks {key!r}")
        kwargs[f.name] = read_typed(hints[f.name], value[f.name], key)
    return cls(**kwargs)
