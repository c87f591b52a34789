"""Checks shared by the tests of ``interformer-encode`` and its Python API: the rows of a command's help, and
whether two feature stores hold the same features."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from interformer_edge.runtime.features import load_features

_FLAG = re.compile(r"(?<![\w<\[])--?[A-Za-z][\w-]*")
_NOTES = re.compile(r"\s*\[(?:default|required)[^\]]*\]\s*$")  # what click appends to a row's help


def help_rows(text: str) -> dict[str, str]:
    """Each option of a ``--help`` text in click's layout and the help of its row, continuation lines joined
    and click's ``[default: …]`` / ``[required]`` left out: ``-w, --workers, --actors <int range>  Encoders
    running …`` gives the same text for all three names."""
    rows: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("  -"):  # a row declares its options, then (after two spaces) starts its help
            declaration, _, help_text = line.strip().partition("  ")
            current = [help_text.strip()]
            for name in _FLAG.findall(declaration):
                rows[name] = current
        elif current is not None and line.startswith("    ") and line.strip():
            current.append(line.strip())
        else:
            current = None
    texts = {id(parts): " ".join(part for part in parts if part) for parts in rows.values()}
    for _ in range(2):  # [required] may follow [default: …]
        texts = {key: _NOTES.sub("", text) for key, text in texts.items()}
    return {name: texts[id(parts)] for name, parts in rows.items()}


def assert_same_store_files(store: Path, reference: Path, names: list[str]) -> None:
    """Each store file holds the reference's maps bit for bit and the same metadata (but its time and digest)."""
    for name in names:
        ours, theirs = load_features(store / name), load_features(reference / name)
        for key, array in theirs.maps.items():
            assert ours.maps[key].dtype == array.dtype and np.array_equal(ours.maps[key], array), (name, key)
        differing = {key for key, value in vars(theirs.meta).items() if getattr(ours.meta, key) != value}
        assert differing <= {"created", "content_sha256"}, (name, differing)
