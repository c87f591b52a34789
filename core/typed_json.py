"""Dataclasses as JSON and back, driven by their annotations: one reader and one writer for every file format.

A file format written as dataclasses (the manifest, the benchmark report) is read with one call, and
every wrong or missing value raises :class:`JsonShapeError` naming its key path (``graphs.decoder.files``).
Field metadata adapts a field to a layout that was fixed before its types existed:

* ``key``: the JSON key when it is not the field's name;
* ``flatten`` (:data:`FLAT`): the field's object is merged into its parent's; an optional flattened field
  is left out when None and read as None when its first key is missing;
* ``omit_none`` (:data:`OMIT_NONE`): the key is left out when the value is None;
* ``serialized: False``: not read (the field keeps its default).

A field whose value is :data:`ABSENT` is left out too (a key that is sometimes absent and sometimes null,
with different meanings). A class with a ``to_json()`` method and a ``from_json(data)`` class method
writes and reads itself. Handled annotations: dataclasses, ``X | None``, unions, ``tuple[X, ...]``, fixed
tuples, ``list[X]``, ``dict[str, X]``, ``Any`` and the scalars; ``bool`` never passes as a number.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from enum import Enum
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class JsonShapeError(ValueError):
    """A JSON value does not have the type its dataclass field declares; the message names the key path."""


class Absent(Enum):
    """The value of a field whose key is left out of the JSON (which is not the same as null)."""

    KEY = "absent"


ABSENT = Absent.KEY
FLAT: dict[str, Any] = {"flatten": True}  # field metadata: merge the field's object into its parent's
OMIT_NONE: dict[str, Any] = {"omit_none": True}  # field metadata: no key when the value is None


def json_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


# ------------------------------------------------------------------------------------------- reading


def read_typed(kind: Any, value: Any, path: str = "", keep_ints: bool = False) -> Any:
    """``value`` (parsed JSON) as an instance of the annotation ``kind``, checked all the way down.

    An ``int`` passes where a ``float`` is asked: converted, or with ``keep_ints`` kept as it is (so that
    the text written again is the same).
    """
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return read_dataclass(kind, value, path, keep_ints)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None) and a is not Absent]
        if len(options) == 1:  # ``X | None``: X's own error names the key that does not fit
            return read_typed(options[0], value, path, keep_ints)
        for option in options:
            try:
                return read_typed(option, value, path, keep_ints)
            except JsonShapeError:
                continue
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise JsonShapeError(f"field {path!r} must be a list")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):  # a fixed tuple
            if len(value) != len(args):
                raise JsonShapeError(f"field {path!r} must hold {len(args)} values")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(read_typed(a, v, f"{path}[{i}]", keep_ints) for i, (a, v) in pairs)
        items = [read_typed(args[0] if args else Any, v, f"{path}[{i}]", keep_ints) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise JsonShapeError(f"field {path!r} must be a JSON object")
        return {k: read_typed(args[1], v, f"{path}.{k}", keep_ints) for k, v in value.items()}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return value if keep_ints else float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # resolves the string annotations of ``from __future__ import annotations``


def _present(kind: Any, data: Mapping[str, Any]) -> bool:
    """Whether the flattened dataclass ``kind`` (or ``kind | None``) has its first key in ``data``."""
    inner = next(a for a in (get_args(kind) or (kind,)) if a is not type(None))
    return json_key(dataclasses.fields(inner)[0]) in data


def read_dataclass(cls: Any, value: Any, path: str = "", keep_ints: bool = False) -> Any:
    """A dataclass from a JSON object: every field by its annotation (and metadata, see the module
    docstring); a missing or null field with a default takes it; unknown keys are ignored."""
    if not isinstance(value, Mapping):
        raise JsonShapeError(f"field {path!r} must be a JSON object" if path else "must be a JSON object")
    if hasattr(cls, "from_json"):
        try:
            return cls.from_json(value)
        except (KeyError, TypeError, ValueError) as err:
            raise JsonShapeError(f"field {path!r}: {err}") from None
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("serialized", True):
            continue
        kind = hints[f.name]
        if f.metadata.get("flatten"):
            optional = type(None) in get_args(kind)
            present = not optional or _present(kind, value)
            kwargs[f.name] = read_typed(kind, value, path, keep_ints) if present else None
            continue
        key = json_key(f)
        where = f"{path}.{key}" if path else key
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if key not in value or (value[key] is None and type(None) not in get_args(kind) and has_default):
            if has_default:
                continue
            raise JsonShapeError(f"lacks {where!r}")
        kwargs[f.name] = read_typed(kind, value[key], where, keep_ints)
    return cls(**kwargs)


def read_json(kind: type[T], value: Any) -> T:
    """A dataclass ``kind`` from parsed JSON written by :func:`dumps` (numbers kept as they were written)."""
    result: T = read_dataclass(kind, value, "", keep_ints=True)
    return result


# ------------------------------------------------------------------------------------------- writing


def to_json_value(value: Any) -> Any:
    """A dataclass (recursively), list, tuple or mapping as plain JSON values; scalars as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_json"):
            return value.to_json()
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is ABSENT or (item is None and (f.metadata.get("omit_none") or f.metadata.get("flatten"))):
                continue
            if f.metadata.get("flatten"):
                out.update(to_json_value(item))
            else:
                out[json_key(f)] = to_json_value(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    return value


def finite(value: Any) -> Any:
    """Strict JSON: non-finite floats (e.g. a logit difference against a NaN output) become null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> str:
    """``value`` as strict, indented JSON text with a final newline."""
    return json.dumps(finite(to_json_value(value)), indent=2, allow_nan=False) + "\n"
