"""Peak resident memory of this process (export and benchmark reports)."""

from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's address space.
    Not ``ru_maxrss``: Linux carries it over ``fork`` + ``exec``, so a probe started by a benchmark
    process that holds 900 MB would report at least 900 MB whatever it did itself. Elsewhere
    ``ru_maxrss`` (bytes on macOS, KiB on the BSDs).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
