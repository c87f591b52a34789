"""The benchmark's step lines: one line per step as it starts (``latency 3/13, about 40 s left: ...``).

The parts of a run announce their steps through a :data:`StepLine` callback; they never print. The
command line shows them on stderr with :func:`step_lines`: a live status line on a terminal, or one
line per step, elapsed time first, when stderr goes to a log file. (A step here is a sentence, with
its own count and estimate from :class:`~interformer_edge.core.progress.Countdown`; it is not a
:class:`~interformer_edge.core.progress.ProgressReporter` bar of units.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

StepLine = Callable[[str], None]


def silent(_step: str) -> None:
    """A :data:`StepLine` that shows nothing."""


@contextmanager
def step_lines(console: Console) -> Iterator[StepLine]:
    """A :data:`StepLine` showing each step on ``console``: ``[   12 s] step`` lines in a log, a status
    line on a terminal (gone when the context ends)."""
    started = time.perf_counter()

    def elapsed() -> str:
        return f"[{time.perf_counter() - started:5.0f} s]"

    if not console.is_terminal:
        yield lambda step: console.print(f"{elapsed()} {step}", markup=False, highlight=False, soft_wrap=True)
        return
    with console.status("starting…") as status:
        yield lambda step: status.update(f"{elapsed()} {step}…")
