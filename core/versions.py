"""Versions of installed packages, read from their metadata (nothing is imported, so asking is cheap)."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """``{name: version}`` of the distributions ``names``; None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tool_versions(names: Iterable[str]) -> dict[str, str]:
    """Python's version and those of the installed ``names`` (the missing left out), for a manifest."""
    installed = {name: version for name, version in package_versions(names).items() if version is not None}
    return {"python": sys.version.split()[0], **installed}
