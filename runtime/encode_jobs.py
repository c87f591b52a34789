"""The local engine of ``interformer-encode encode``: the images of a run, the worker processes, the summary.

A run is a list of :class:`Job` (an image and its store file); each ends as an :class:`Outcome`
(encoded, skipped, busy or failed). The local engine encodes the jobs in this process
(:func:`encode_here`) or in a pool of spawned processes (:func:`encode_in_pool`), each running
:func:`encode_chunk` after :func:`init_worker`; the Ray engine (:mod:`.ray_engine`) shares the jobs,
the outcomes, the resume rule :func:`is_up_to_date` and the :func:`summary_table`.

Worker processes are started with ``spawn``, which finds :func:`init_worker` and
:func:`encode_chunk` by module path: both stay module-level functions of this module, and the
per-process encoder lives in its globals.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context, resource_tracker
from pathlib import Path
from typing import Any

from rich.table import Table

from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.image_io import ImageReadError
from interformer_edge.core.messages import first_line
from interformer_edge.core.progress import ProgressReporter

from .errors import InterFormerRuntimeError
from .features import FEATURE_SUFFIX, read_meta, save_features
from .signals import finish_in_hand
from .store import ClaimHeldError, claim


@dataclass(frozen=True)
class Job:
    """One image of the run: where it is, where its features go, how it is named in messages.

    ``image`` is a local path, or a URI string (``s3://…``, ``gs://…``, ``file://…``) read by the Ray
    engine from a list file.
    """

    image: Path | str
    target: Path
    name: str


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "encoded" | "skipped" | "busy" (another run is encoding it) | "failed"
    message: str = ""
    seconds: float = 0.0
    worker: str = ""  # which process or Ray actor handled it (per-worker throughput in the summary)


def list_jobs(source: Path, out: Path, recursive: bool) -> list[Job]:
    """The images under ``source`` (a folder or one file) and their store paths, sorted by name."""
    if source.is_file():
        return [Job(source, out / (source.name + FEATURE_SUFFIX), source.name)]
    pattern = "**/*" if recursive else "*"
    out_resolved = out.resolve()
    jobs = []
    for path in sorted(source.glob(pattern)):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if out_resolved in path.resolve().parents:  # never encode the store's own folder
            continue
        rel = path.relative_to(source)
        jobs.append(Job(path, out / rel.with_name(rel.name + FEATURE_SUFFIX), rel.as_posix()))
    return jobs


def chunks(jobs: Sequence[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield list(jobs[start : start + size])


def threads_per_worker(workers: int, threads: int) -> int:
    """Threads of each local worker: ``threads``, or 0 for the cores this process may use divided among the workers."""
    return threads or max(1, _cpu_count() // workers)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------- worker

_ENCODER = None  # one per process, built by init_worker
_SETTINGS: dict[str, object] = {}
_STOP: Any = None  # a multiprocessing Event shared with the parent: set when the run is being stopped


def _stop_requested() -> bool:
    return _STOP is not None and _STOP.is_set()


def init_worker(
    model: str,
    backend: str,
    threads: int,
    precision: str,
    max_side: int | None,
    dtype: str,
    force: bool,
    in_pool: bool = True,
    stop: Any = None,
) -> None:
    global _ENCODER, _STOP
    from .encoder import Encoder

    _STOP = stop
    if in_pool:
        # Ctrl-C and SIGTERM are the parent's to handle: it sets ``stop``, so each worker finishes the
        # image in hand (its file complete, its claim released) and starts no other; a worker killed
        # mid-write would leave its temporary and claim files behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stop is not None:
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    # The parent verified the artifact hashes once; workers only check sizes (hashing is slow for big models).
    _ENCODER = Encoder(model, backend=backend, threads=threads, precision=precision, max_side=max_side, verify=False)
    _SETTINGS.update(max_side=max_side, dtype=dtype, force=force)


def is_up_to_date(target: Path, model: str, image_sha: str, max_side: int | None) -> bool:
    """Whether the store file ``target`` already holds this image's features for the model id ``model``
    and the size limit ``max_side``: the resume rule of every engine."""
    if not target.is_file():
        return False
    try:
        meta = read_meta(target)
    except InterFormerRuntimeError:
        return False  # unreadable: encode again (the rename in save_features replaces it)
    # 0 and None both mean "no downscale" (the file records None)
    return meta.model_id == model and meta.image_sha256 == image_sha and meta.max_side == (max_side or None)


def encode_chunk(jobs: list[Job]) -> list[Outcome]:
    """Encode (or skip) each job; a failure is reported in its outcome and never stops the chunk.

    Each image is claimed first (:mod:`.store`): one that another run is encoding is left to it
    ("busy"), and the up-to-date check runs under the claim, so concurrent runs on one store encode
    every image once. Once the run is being stopped, the jobs not yet begun are left out.
    """
    from .encoder import sha256_bytes

    outcomes = []
    for job in jobs:
        if _stop_requested():
            break
        started = time.perf_counter()
        try:
            with claim(job.target):
                image_sha = sha256_bytes(Path(job.image).read_bytes())
                if not _SETTINGS["force"] and is_up_to_date(
                    job.target, _ENCODER.model_id, image_sha, _SETTINGS["max_side"]
                ):
                    outcomes.append(Outcome(job.name, "skipped"))
                    continue
                features = _ENCODER.encode(job.image, name=job.name, image_sha256=image_sha)
                save_features(features, job.target, dtype=str(_SETTINGS["dtype"]))
            outcomes.append(
                Outcome(job.name, "encoded", seconds=time.perf_counter() - started, worker=f"pid {os.getpid()}")
            )
        except ClaimHeldError as err:
            outcomes.append(Outcome(job.name, "busy", str(err)))
        except (ImageReadError, InterFormerRuntimeError, OSError, ValueError) as err:
            outcomes.append(Outcome(job.name, "failed", first_line(err)))
        except Exception as err:  # a bug or backend crash on one image must not end the run either
            outcomes.append(Outcome(job.name, "failed", first_line(err, with_type=True)))
    return outcomes


# -------------------------------------------------------------------------------------------- drivers


def encode_here(jobs: list[Job], init_args: tuple[Any, ...], record: Callable[[list[Outcome]], None]) -> None:
    """Encode ``jobs`` in this process, one at a time; an interrupt finishes and records the image in hand.

    ``init_args``: the arguments of :func:`init_worker` up to ``force``.
    """
    init_worker(*init_args, in_pool=False)
    for job in jobs:
        with finish_in_hand():
            record(encode_chunk([job]))


def encode_in_pool(
    jobs: list[Job],
    workers: int,
    batch: int,
    init_args: tuple[object, ...],
    record: Callable[[list[Outcome]], None],
    progress: ProgressReporter,
) -> None:
    """Encode ``jobs`` in ``workers`` spawned processes; on an interrupt, stop them cleanly and re-raise.

    Stopping: the shared event tells every worker to finish the image in hand and begin no other,
    queued chunks are cancelled, and the pool is shut down and joined, so no worker, resource tracker,
    temporary or claim file outlives the run. A second interrupt during that wait terminates the workers.
    """
    context = get_context("spawn")  # a forked child would inherit the parent's inference thread pools
    stop = context.Event()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(*init_args, True, stop))
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
        progress.note("interrupted: finishing the images in progress (interrupt again to stop at once)")
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
    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        stop()


# -------------------------------------------------------------------------------------------- summary


def summary_table(outcomes: list[Outcome], total: int, seconds: float, interrupted: bool | str) -> Table:
    """``interrupted``: False, or what stopped the run (e.g. ``"SIGTERM"``) for the title."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("encoded", "skipped", "busy", "failed")}
    encode_time = sum(o.seconds for o in outcomes if o.status == "encoded")
    reason = f" by {interrupted}" if isinstance(interrupted, str) else ""
    table = Table(
        title=f"interrupted{reason}: partial summary" if interrupted else "summary",
        title_justify="left",
        show_header=False,
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("encoded", str(counts["encoded"]))
    table.add_row("skipped (up to date)", str(counts["skipped"]))
    if counts["busy"]:
        table.add_row("left to another run (being encoded there)", str(counts["busy"]))
    table.add_row("failed", f"[red]{counts['failed']}[/]" if counts["failed"] else "0")
    if interrupted:
        table.add_row("not started", str(total - len(outcomes)))
    table.add_row("wall time", f"{seconds:.1f} s")
    if counts["encoded"]:
        table.add_row("per image (in a worker)", f"{encode_time / counts['encoded']:.2f} s")
        table.add_row("images/s (encoded, wall time)", f"{counts['encoded'] / max(seconds, 1e-9):.2f}")
    by_worker: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.status == "encoded" and outcome.worker:
            by_worker.setdefault(outcome.worker, []).append(outcome.seconds)
    if len(by_worker) > 1:  # how evenly the work spread, and each worker's rate while it was encoding
        for worker, times in sorted(by_worker.items()):
            table.add_row(f"  {worker}", f"{len(times)} images, {len(times) / max(sum(times), 1e-9):.2f} images/s")
    return table
