"""Reading parsed JSON into dataclasses by their annotations (the manifest's reader)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from interformer_edge.core.typed_json import JsonShapeError, read_dataclass


@dataclass(frozen=True)
class Inner:
    name: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class Outer:
    count: int
    scale: float
    pair: tuple[float, float]
    flags: dict[str, bool]
    inner: Inner
    items: tuple[Inner, ...]
    maybe: str | None
    label: str = "default"
    extra: dict[str, object] = field(default_factory=dict)
    hidden: int = field(default=7, metadata={"serialized": False})


GOOD = {
    "count": 3,
    "scale": 2,  # an int where a float is asked
    "pair": [0.5, 1],
    "flags": {"a": True},
    "inner": {"name": "x", "shape": [1, "H/4"]},
    "items": [{"name": "y", "shape": []}],
    "maybe": None,
    "unknown": "ignored",
    "hidden": 99,
}


def test_a_well_formed_object_becomes_the_dataclass() -> None:
    got = read_dataclass(Outer, GOOD, "")
    assert got == Outer(
        count=3,
        scale=2.0,
        pair=(0.5, 1.0),
        flags={"a": True},
        inner=Inner("x", (1, "H/4")),
        items=(Inner("y", ()),),
        maybe=None,
    )
    assert isinstance(got.scale, float) and got.hidden == 7 and got.label == "default"


def test_missing_or_null_fields_with_a_default_take_it() -> None:
    assert read_dataclass(Outer, {**GOOD, "label": None}, "").label == "default"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": True}, "field 'count' has the wrong type (bool)"),
        ({"count": 1.5}, "field 'count' has the wrong type (float)"),
        ({"pair": [1.0]}, "field 'pair' must hold 2 values"),
        ({"pair": "1,2"}, "field 'pair' must be a list"),
        ({"flags": {"a": 1}}, "field 'flags.a' has the wrong type (int)"),
        ({"inner": {"name": "x", "shape": [1, None]}}, "field 'inner.shape[1]' has the wrong type (NoneType)"),
        ({"items": [{"name": "y"}]}, "lacks 'items[0].shape'"),
        ({"inner": []}, "field 'inner' must be a JSON object"),
        ({"maybe": 5}, "field 'maybe' has the wrong type (int)"),
        ({"count": None}, "field 'count' has the wrong type (NoneType)"),
    ],
)
def test_a_wrong_value_names_its_key_path(change: dict, message: str) -> None:
    with pytest.raises(JsonShapeError) as err:
        read_dataclass(Outer, {**GOOD, **change}, "")
    assert str(err.value) == message


def test_a_missing_field_without_default_is_named() -> None:
    data = dict(GOOD)
    del data["maybe"]
    with pytest.raises(JsonShapeError, match=r"^lacks 'maybe'$"):
        read_dataclass(Outer, data, "")
    with pytest.raises(JsonShapeError, match=r"^must be a JSON object$"):
        read_dataclass(Outer, [GOOD], "")
