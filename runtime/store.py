"""Per-image claims in a feature store, so runs that share a store never encode an image twice.

Before encoding an image, a run creates ``.<name>.npz.lock`` beside the store file with
``O_CREAT | O_EXCL`` (atomic on local filesystems and NFSv3+), holding its host name, process id
and the time. A run that finds the lock held leaves the image to its owner. A lock is stale, and
is taken over, when its owner is a process of this host that no longer runs, or when it is older
than :data:`STALE_LOCK_SECONDS` (an owner on another host that died). The owner removes it after
writing the store file (or failing), also when interrupted. Taking over a stale lock (remove, then
create) is not atomic: two runs that find the same stale lock at the same instant may both encode
that one image; the store file stays complete either way (atomic writes).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from interformer_edge.core.atomic import default_file_mode

LOCK_SUFFIX = ".lock"
# Encoding one image takes seconds; a lock this old belongs to a run that died on another host.
STALE_LOCK_SECONDS = 3600.0


def lock_path(target: Path) -> Path:
    """The claim file of the store file ``target`` (hidden, beside it)."""
    return target.with_name(f".{target.name}{LOCK_SUFFIX}")


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _read_owner(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Owner(str(data["host"]), int(data["pid"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # vanished, or being written at this moment: treat as held (checked again below)


def _is_stale(path: Path, owner: Owner | None, now: float) -> bool:
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > STALE_LOCK_SECONDS:
        return True
    if owner is None:
        return False
    return owner.host == socket.gethostname() and not psutil.pid_exists(owner.pid)


class Claim:
    """A held claim on one store file; :meth:`release` (or leaving the ``with`` block) removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ClaimHeldError(Exception):
    """Another live run is encoding this image; ``owner`` says which (None: not readable yet)."""

    def __init__(self, owner: Owner | None) -> None:
        super().__init__(f"being encoded by another run ({owner.describe() if owner else 'owner unknown'})")
        self.owner = owner


def claim(target: Path) -> Claim:
    """Claim the store file ``target`` for this process.

    Raises:
        ClaimHeldError: another live run holds it.
        OSError: the store folder is not writable.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
    for _ in range(2):  # second round: after removing a stale lock
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, default_file_mode())
        except FileExistsError:
            owner = _read_owner(path)
            if not _is_stale(path, owner, time.time()):
                raise ClaimHeldError(owner) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
        return Claim(path)
    raise ClaimHeldError(_read_owner(path))
