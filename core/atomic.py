"""Writing files all-or-nothing, with the modes the user's umask gives every other file.

Every file the tools write (manifest, feature-store files, reports, plots, checkpoints) goes through
:func:`atomic_target` or :func:`write_atomic`: the data is written to a hidden temporary file in the
target's folder and renamed over the target only when complete, so a crash, a full disk or a
signal never leaves a half-written file under the real name. ``tempfile.mkstemp`` creates its file
with mode 0600; before the rename the temporary file gets ``0666 & ~umask`` (0644 under the usual
umask 022, 0664 under 002), the mode ``open()`` would have given it, so files stay readable by
whoever the user shares the folder with.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ≥ 4.7: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it: restore at once, one thread at a time
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new regular file gets from ``open()``: ``0666`` minus the umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it becomes ``path`` (umask mode), else it is removed.

    >>> with atomic_target(out / "plot.png") as tmp:
    ...     figure.savefig(tmp)
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there when something failed


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` all-or-nothing (see :func:`atomic_target`); returns ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_target(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)
