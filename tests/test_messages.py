"""One-line messages from exceptions (core.messages)."""

from __future__ import annotations

from interformer_edge.core.messages import first_line


def test_first_line_keeps_the_first_non_empty_line_or_names_the_type() -> None:
    assert first_line(ValueError("\n  bad size 3x4  \nTraceback details")) == "bad size 3x4"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("disk full\nmore"), with_type=True) == "OSError: disk full"
    assert first_line(RuntimeError("x" * 500), limit=200) == "x" * 200
