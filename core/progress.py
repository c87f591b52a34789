"""Progress of long commands that is readable both on a terminal and in a log file.

On a terminal, :class:`ProgressReporter` draws rich progress bars. When stderr is redirected (a log
file, CI, ``nohup``) rich would print the bars only once, at the end; instead the reporter prints
plain lines: one when a step starts, one each time another ``percent_step`` % is done or
``interval`` seconds have passed (counts, elapsed time, an estimate of the time left), and one when
the step ends. Lines are never hard-wrapped (see :func:`cli_console`).

>>> with ProgressReporter(cli_console(stderr=True)) as progress:
...     tick = progress.step("encoding", total=240)
...     for done in range(1, 241):
...         tick(done)
...     progress.note("3 images failed")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Width for tables when the output is not a terminal (rich would use 80 columns and wrap them).
LOG_WIDTH = 200


def cli_console(stderr: bool = False) -> Console:
    """A console for a command's output: the terminal's width on a terminal; otherwise wide tables and
    no hard wraps of messages (a long error stays one line in a log file)."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Countdown:
    """Where a counted step is, for one-line progress messages: ``countdown(2)`` before the third of 13
    units gives ``3/13, about 40 s left`` (the estimate from the units done so far; none before the first)."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.clock = total, clock
        self.started = clock()

    def __call__(self, done: int) -> str:
        position = f"{done + 1}/{self.total}"
        if done == 0:
            return position
        left = (self.clock() - self.started) / done * (self.total - done)
        return f"{position}, about {duration(left)} left"


class _LineStep:
    """One step printed as lines (the non-terminal mode)."""

    def __init__(
        self,
        console: Console,
        name: str,
        total: int | None,
        percent_step: int,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.console, self.name, self.total = console, name, total
        self.percent_step, self.interval, self.clock = percent_step, interval, clock
        self.started = self.last_time = clock()
        self.done = 0
        self.last_percent = 0
        self.finished = False
        suffix = f" ({total} to do)" if total else ""
        self._print(f"{name}: started{suffix}")

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if self.total:
            if done >= self.total:
                self.finish()
                return
            percent = 100 * done // self.total
            due = percent >= self.last_percent + self.percent_step or now - self.last_time >= self.interval
            if due and done > 0:
                self.last_percent = percent - percent % self.percent_step
                self.last_time = now
                elapsed = now - self.started
                left = elapsed / done * (self.total - done)
                self._print(
                    f"{self.name}: {done}/{self.total} ({percent} %), {duration(elapsed)} elapsed, "
                    f"about {duration(left)} left"
                )
        elif now - self.last_time >= self.interval:
            self.last_time = now
            self._print(f"{self.name}: {done} done, {duration(now - self.started)} elapsed")

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        elapsed = duration(self.clock() - self.started)
        if self.total and self.done < self.total:  # ended early: interrupted, or the rest was not needed
            self._print(f"{self.name}: stopped at {self.done}/{self.total} after {elapsed}")
        else:
            counts = f" {self.done}/{self.total}" if self.total else ""
            self._print(f"{self.name}: done{counts} in {elapsed}")


class ProgressReporter:
    """Steps with a known or unknown number of units; bars on a terminal, lines otherwise.

    ``step(name, total)`` ends the previous step and returns a callback taking the number of units
    done so far (the interface ``interformer_edge.quantize.run_quantize`` takes); ``note(text)`` prints a line
    between the bars. Use it as a context manager: leaving it ends the last step.

    Args:
        console: where to draw (stderr for progress, usually :func:`cli_console`).
        percent_step: without a terminal, print a line at least every this many percent...
        interval: ...and at least every this many seconds while units complete.
        terminal: force bars (True) or lines (False); default: ``console.is_terminal``.
    """

    def __init__(
        self,
        console: Console,
        percent_step: int = 10,
        interval: float = 30.0,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.terminal = console.is_terminal if terminal is None else terminal
        self.percent_step, self.interval, self.clock = percent_step, interval, clock
        self._bars: Progress | None = None
        self._task: int | None = None
        self._line: _LineStep | None = None

    def __enter__(self) -> ProgressReporter:
        if self.terminal:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bars = Progress(*columns, console=self.console)
            self._bars.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bars is not None:
            self._bars.__exit__(kind, error, trace)
            self._bars = None
        elif self._line is not None and kind is None:
            self._line.finish()

    def step(self, name: str, total: int | None = None) -> Callable[[int], None]:
        if self._bars is not None:
            if self._task is not None:  # a new step means the previous one is over
                self._bars.update(self._task, completed=self._bars.tasks[self._task].total)
            task = self._task = self._bars.add_task(name, total=total or 1)
            bars = self._bars
            return lambda done: bars.update(task, completed=done)
        if self._line is not None:
            self._line.finish()
        line = self._line = _LineStep(self.console, name, total, self.percent_step, self.interval, self.clock)
        return line.update

    def note(self, message: str) -> None:
        console = self._bars.console if self._bars is not None else self.console
        console.print(message, markup=False, highlight=False, soft_wrap=True)
