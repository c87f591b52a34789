"""The local engine of an encode run: the images encoded in this process, or in a pool of worker processes.

:func:`encode_here` encodes in this process, one image at a time; :func:`encode_in_pool` in spawned
processes, each running :func:`encode_chunk` after :func:`init_worker` built its encoder from the
run's :class:`~.encode_image.EncodeSettings`. Every image goes through
:func:`~.encode_image.encode_into_store`, as in the Ray engine. Both drivers hand each finished
chunk's outcomes to ``record`` as they arrive.

Worker processes are started with ``spawn``, which finds :func:`init_worker` and
:func:`encode_chunk` by module path: both stay module-level functions of this module, and the
per-process encoder lives in its globals.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context, resource_tracker
from typing import TYPE_CHECKING, Any

from .encode_image import EncodeSettings, Job, Outcome, encode_into_store
from .image_sources import list_jobs
from .signals import finish_in_hand

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = [
    "chunks",
    "encode_chunk",
    "encode_here",
    "encode_in_pool",
    "init_worker",
    "list_jobs",  # its home is .image_sources; older code imports it from here
    "threads_per_worker",
]

Record = Callable[[list[Outcome]], None]


def chunks(jobs: Sequence[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield list(jobs[start : start + size])


def threads_per_worker(workers: int, threads: int | None) -> int:
    """Threads of each local worker: ``threads``, or (0 or None) the cores this process may use divided
    among the workers."""
    return threads or max(1, _cpu_count() // workers)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------- worker

_ENCODER: Encoder | None = None  # one per process, built by init_worker
_SETTINGS: EncodeSettings | None = None
_STOP: Any = None  # a multiprocessing Event shared with the parent: set when the run is being stopped


def _stop_requested() -> bool:
    return _STOP is not None and _STOP.is_set()


def init_worker(settings: EncodeSettings, in_pool: bool = True, stop: Any = None) -> None:
    """Build this process's encoder from ``settings``.

    ``in_pool``: this is a pool worker, whose Ctrl-C and SIGTERM belong to the parent; ``stop``: the
    parent's multiprocessing Event, set when the run is being stopped.
    """
    global _ENCODER, _SETTINGS, _STOP
    _STOP = stop
    if in_pool:
        # Ctrl-C and SIGTERM are the parent's to handle: it sets ``stop``, so each worker finishes the
        # image in hand (its file complete, its claim released) and starts no other; a worker killed
        # mid-write would leave its temporary and claim files behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stop is not None:
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    _ENCODER = settings.open_encoder()
    _SETTINGS = settings


def _init_pool_worker(settings: EncodeSettings, stop: Any) -> None:
    init_worker(settings, in_pool=True, stop=stop)


def encode_chunk(jobs: list[Job]) -> list[Outcome]:
    """Encode (or skip) each job with this process's encoder (:func:`init_worker` first); a failure is
    reported in its outcome and never stops the chunk. Once the run is being stopped, the jobs not yet
    begun are left out."""
    if _ENCODER is None or _SETTINGS is None:
        raise RuntimeError("encode_chunk before init_worker")
    outcomes = []
    for job in jobs:
        if _stop_requested():
            break
        outcomes.append(encode_into_store(_ENCODER, _SETTINGS, job, worker=f"pid {os.getpid()}"))
    return outcomes


# -------------------------------------------------------------------------------------------- drivers


def encode_here(jobs: list[Job], settings: EncodeSettings, record: Record) -> None:
    """Encode ``jobs`` in this process, one at a time; an interrupt finishes and records the image in hand."""
    init_worker(settings, in_pool=False)
    for job in jobs:
        with finish_in_hand():
            record(encode_chunk([job]))


def encode_in_pool(
    jobs: list[Job],
    settings: EncodeSettings,
    workers: int,
    batch: int,
    record: Record,
    note: Callable[[str], None] = lambda message: None,
) -> None:
    """Encode ``jobs`` in ``workers`` spawned processes, ``batch`` images handed to a worker at a time;
    on an interrupt, stop them cleanly (``note`` says so) and re-raise.

    Stopping: the shared event tells every worker to finish the image in hand and begin no other,
    queued chunks are cancelled, and the pool is shut down and joined, so no worker, resource tracker,
    temporary or claim file outlives the run. A second interrupt during that wait terminates the workers.

    Raises:
        BrokenProcessPool: a worker could not start (e.g. its encoder failed to load) or died.
    """
    context = get_context("spawn")  # a forked child would inherit the parent's inference thread pools
    stop = context.Event()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_pool_worker, initargs=(settings, stop))
    submitted: list[Future[list[Outcome]]] = []
    recorded: set[Future[list[Outcome]]] = set()
    try:
        submitted += [pool.submit(encode_chunk, c) for c in chunks(jobs, batch)]
        pending = set(submitted)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                recorded.add(future)
                record(future.result())
    except KeyboardInterrupt:
        stop.set()
        note("interrupted: finishing the images in progress (interrupt again to stop at once)")
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            for process in list(getattr(pool, "_processes", {}).values()):  # no public API for this
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        for future in submitted:  # chunks that finished before or during the shutdown and are not counted yet
            if future not in recorded and future.done() and not future.cancelled() and future.exception() is None:
                recorded.add(future)
                record(future.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        del pool, stop
        _stop_resource_tracker()


def _stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker now that the pool and its semaphores are gone.

    Left alone it notices the parent's exit a moment later; stopping it here means no process of
    the run outlives the command, also after SIGTERM. (``_stop`` is private: skipped if it is absent.)
    """
    gc.collect()  # the pool's queues and the stop event hold semaphores the tracker watches
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    # Only the process that started the tracker stops it: a spawned child knows its parent's, without a pid.
    if stop is not None and getattr(tracker, "_pid", None) is not None:
        stop()
