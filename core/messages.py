"""One-line messages from exceptions: what every command, report and HTTP error shows of a failure."""

from __future__ import annotations


def first_line(err: BaseException, limit: int | None = None, with_type: bool = False) -> str:
    """The first non-empty line of ``str(err)``, or the exception's type name when it has no message.

    ``with_type`` prefixes the type name (``"ValueError: ..."``, for reports where the kind matters);
    ``limit`` cuts the result to that many characters.
    """
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if with_type:
        text = f"{type(err).__name__}: {text}"
    elif not text:
        text = type(err).__name__
    return text[:limit] if limit is not None else text
