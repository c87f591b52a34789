"""The report's dataclasses as JSON values and back: fields are the JSON keys, in their order.

``report.json``'s layout was fixed before its types existed, so field metadata adapts a field to it:

* ``key``: the JSON key when it is not the field's name (``compute`` is written as ``hint``);
* ``flatten``: the field's object is merged into its parent's (a row's configuration keys sit beside
  its numbers); an optional flattened field is left out when None and read as None when its first
  key is missing;
* ``omit_none``: the key is left out when the value is None (such keys were absent, never null).

A field whose value is :data:`ABSENT` is left out too: for a key that is sometimes absent and sometimes
null, with different meanings. A class with a ``to_json()`` method and a ``from_json(data)`` class
method (for keys that carry data, such as ``miou@5``) writes and reads itself.
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

from interformer_edge.core.typed_json import JsonShapeError

T = TypeVar("T")


class Absent(Enum):
    """The value of a field whose key is left out of the JSON (which is not the same as null)."""

    KEY = "absent"


ABSENT = Absent.KEY
FLAT: dict[str, Any] = {"flatten": True}  # field metadata: merge the field's object into its parent's
OMIT_NONE: dict[str, Any] = {"omit_none": True}  # field metadata: no key when the value is None


def json_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


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


def from_json_value(kind: Any, value: Any, path: str = "") -> Any:
    """``value`` (parsed JSON) as the annotation ``kind``; raises :class:`JsonShapeError` naming the key path.

    Numbers keep their JSON type (an integer where a float is declared stays an integer, so that the
    text written again is the same).
    """
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return _read_object(kind, value, path)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None) and a is not Absent]
        if len(options) == 1:  # ``X | None``: X's own error names the key that does not fit
            return from_json_value(options[0], value, path)
        for option in options:
            try:
                return from_json_value(option, value, path)
            except JsonShapeError:
                continue
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise JsonShapeError(f"field {path!r} must be a list")
        items = [from_json_value(args[0] if args else Any, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise JsonShapeError(f"field {path!r} must be a JSON object")
        return {k: from_json_value(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise JsonShapeError(f"field {path!r} has the wrong type ({type(value).__name__})")
    return value


def read_json(kind: type[T], value: Any) -> T:
    """:func:`from_json_value` for a dataclass, typed."""
    result: T = from_json_value(kind, value)
    return result


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _present(kind: Any, data: Mapping[str, Any]) -> bool:
    """Whether the flattened dataclass ``kind`` (or ``kind | None``) has its first key in ``data``."""
    inner = next(a for a in (get_args(kind) or (kind,)) if a is not type(None))
    return json_key(dataclasses.fields(inner)[0]) in data


def _read_object(cls: Any, value: Any, path: str) -> Any:
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
        kind = hints[f.name]
        if f.metadata.get("flatten"):
            optional = type(None) in get_args(kind)
            kwargs[f.name] = from_json_value(kind, value, path) if not optional or _present(kind, value) else None
            continue
        key = json_key(f)
        where = f"{path}.{key}" if path else key
        if key not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise JsonShapeError(f"lacks {where!r}")
            continue
        kwargs[f.name] = from_json_value(kind, value[key], where)
    return cls(**kwargs)
