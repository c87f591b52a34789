"""SIGTERM handled like Ctrl-C by long commands, so that both stop cleanly.

Python turns SIGINT into :class:`KeyboardInterrupt`; SIGTERM (``kill``, ``systemctl stop``, a
container runtime) would end the process at once, leaving worker processes, the multiprocessing
resource tracker and claim files behind. Inside :func:`interrupt_on_sigterm` SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, so one ``except KeyboardInterrupt`` path stops the
workers, cleans up and prints a summary for both signals.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised in the main thread by the handler of :func:`interrupt_on_sigterm`)."""


def signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: SIGTERM for :class:`Terminated`, else SIGINT."""
    return int(signal.SIGTERM) if isinstance(interrupt, Terminated) else int(signal.SIGINT)


def exit_status(interrupt: KeyboardInterrupt | str) -> int:
    """The shell convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM); ``interrupt``
    is the interrupt or the signal's name (:func:`signal_name`)."""
    number = int(signal.Signals[interrupt]) if isinstance(interrupt, str) else signal_number(interrupt)
    return 128 + number


def signal_name(interrupt: KeyboardInterrupt) -> str:
    """``"SIGINT"`` or ``"SIGTERM"``."""
    return signal.Signals(signal_number(interrupt)).name


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (only in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def finish_in_hand() -> Iterator[None]:
    """Within the block, a first SIGINT or SIGTERM waits until the block's work is done and is raised
    as it ends (so the work in hand is finished and counted); a second one interrupts at once.

    Main thread only (elsewhere a no-op), like :func:`interrupt_on_sigterm`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if held:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        raise Terminated() if held[0] == signal.SIGTERM else KeyboardInterrupt()
