"""Encode a folder of images into a feature store: the Python API behind ``interformer-encode encode``.

>>> from interformer_edge.runtime import EncodeSettings, encode_folder, load_features
>>> from interformer_edge.runtime.export import RuntimeSettings
>>> settings = EncodeSettings("interformer_export", RuntimeSettings(threads=1), max_side=1024)
>>> result = encode_folder("assets/photos", "features", settings, workers=2)
>>> result.counts
{'encoded': 4, 'skipped': 0, 'busy': 0, 'failed': 0}
>>> features = load_features("features/chelsea.jpg.npz")      # one .npz per image: <store>/<relative path>.npz
>>> encode_folder("assets/photos", "features", settings).counts["skipped"]   # up to date: left as they are
4

A run lists its images (:mod:`.image_sources`), checks the model once (artifact hashes, backend and
compute type), then encodes with the local engine (this process for one worker, else a pool of
processes: :mod:`.encode_jobs`) or on a Ray cluster (:mod:`.ray_engine`). Each image is stored by
:func:`~.encode_image.encode_into_store` in every engine: claimed, skipped when up to date, encoded,
written atomically; an image that fails is an outcome, never an exception. Pass a
:class:`~interformer_edge.core.progress.ProgressReporter` to see the run (what it is about to do, a
step ``encoding`` ticking per image, a line per failed image).

Ctrl-C or SIGTERM (in the main thread): the images in hand are finished, the rest not started, and the
result says what interrupted it (:attr:`EncodeResult.interrupted`). With ``workers`` > 1 the local engine
spawns its worker processes, which import the main module: a script calls :func:`encode_folder` under
``if __name__ == "__main__":`` (Python's rule for every spawned process pool).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from interformer_edge.core.manifest import ManifestError
from interformer_edge.core.progress import ProgressReporter

from .backends import check_precision, choose_backend
from .encode_image import STATUSES, EncodeSettings, Job, Outcome
from .encode_jobs import encode_here, encode_in_pool, threads_per_worker
from .errors import InterFormerRuntimeError
from .export import Export, open_export
from .image_sources import ImageListError, is_list_file, list_file_jobs, list_jobs
from .ray_cluster import RayCluster, RayEngineError
from .signals import interrupt_on_sigterm, signal_name

ENGINES: tuple[str, ...] = ("local", "ray")


class EncodeRunError(InterFormerRuntimeError):
    """The run could not start (a missing source, an unusable model, backend or compute type, an unreadable
    image list, no Ray) or its workers could not run; the message says why, in one line."""


@dataclass(frozen=True)
class EncodeResult:
    """What a run did: one :class:`~.encode_image.Outcome` per image handled (in the order they finished),
    of ``total`` images listed; ``seconds`` of wall time encoding; ``interrupted``: ``"SIGINT"`` or
    ``"SIGTERM"`` when a signal stopped the run early, else None; the ``model_id`` of the features, and
    the ``workers`` (processes or Ray actors) of ``threads`` threads each that encoded them."""

    outcomes: tuple[Outcome, ...]
    total: int
    seconds: float = 0.0
    interrupted: str | None = None
    model_id: str = ""
    workers: int = 0
    threads: int = 0

    def count(self, status: str) -> int:
        """How many images ended as ``status`` (one of :data:`~.encode_image.STATUSES`)."""
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def counts(self) -> dict[str, int]:
        """``{"encoded": n, "skipped": n, "busy": n, "failed": n}``."""
        return {status: self.count(status) for status in STATUSES}

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """The images that could not be encoded, with why (``outcome.message``)."""
        return tuple(outcome for outcome in self.outcomes if outcome.status == "failed")

    @property
    def not_started(self) -> int:
        """Images an interrupt left untouched."""
        return self.total - len(self.outcomes)


def encode_folder(
    source: str | Path,
    store: str | Path,
    settings: EncodeSettings,
    *,
    engine: str = "local",
    workers: int = 1,
    batch: int = 4,
    recursive: bool = False,
    address: str | None = None,
    progress: ProgressReporter | None = None,
) -> EncodeResult:
    """Encode the images of ``source`` into the feature store ``store``; resumable, shareable between runs.

    Args:
        source: a folder of images, one image, or (``engine="ray"``) an image list (``.txt``: paths or
            URIs, one a line). Each image goes to ``<store>/<path relative to source>.npz``.
        store: the feature store folder (created if missing).
        settings: the model, how to run its encoder, ``max_side``, ``dtype`` and ``force``.
            ``settings.runtime.threads`` None: the cores (or the cluster's CPUs) divided among the workers.
        engine: ``"local"`` (processes on this machine) or ``"ray"`` (a Ray cluster; the ``[ray]`` extra).
        workers: encoders side by side: local processes (1: this process), or Ray actors.
        batch: images handed to a worker at a time.
        recursive: also encode images in sub-folders.
        address: with ``engine="ray"``, the cluster (``"auto"`` or ``"HEAD:6379"``; None: ``$RAY_ADDRESS``,
            else Ray is started on this machine for the run).
        progress: where to show the run (lines or bars); None: silent.

    Returns:
        The :class:`EncodeResult`; ``total`` 0 when ``source`` holds no images.

    Raises:
        EncodeRunError: the run could not start (nothing written), or its workers could not run (the
            images stored before that stay; a second run resumes).
        ValueError: ``engine``, ``workers`` or ``batch`` out of range.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers < 1 or batch < 1:
        raise ValueError(f"workers and batch must be at least 1 (got {workers}, {batch})")
    source, store = Path(source), Path(store)
    if not source.exists():
        raise EncodeRunError(f"{source} does not exist")
    export = _open_checked(settings)
    jobs = find_jobs(source, store, recursive, engine)
    if not jobs:
        return EncodeResult((), 0, model_id=export.model_id)
    workers = min(workers, len(jobs))
    note = progress.note if progress is not None else _silent
    cluster: RayCluster | None = None
    if engine == "ray":
        cluster, threads = _connect(address, workers, settings.runtime.threads, note)
    else:
        threads = threads_per_worker(workers, settings.runtime.threads)
    settings = settings.with_threads(threads)
    note(f"model {export.model_id} · {len(jobs)} images · {workers} worker(s) × {threads} thread(s) → {store}")

    started = time.perf_counter()
    outcomes, interrupted = _run(jobs, settings, workers, batch, cluster, progress)
    seconds = time.perf_counter() - started
    return EncodeResult(tuple(outcomes), len(jobs), seconds, interrupted, export.model_id, workers, threads)


def find_jobs(source: Path, store: Path, recursive: bool, engine: str = "local") -> list[Job]:
    """The images of a run: a folder or one image; with the Ray engine also a list file.

    Raises:
        EncodeRunError: an image list for the local engine, or a list that cannot be read.
    """
    if not is_list_file(source):
        return list_jobs(source, store, recursive)
    if engine != "ray":
        raise EncodeRunError(
            f"{source} is an image list: lists are read by --engine ray; give the local engine a folder or one image"
        )
    try:
        return list_file_jobs(source, store)
    except ImageListError as err:
        raise EncodeRunError(str(err)) from err


def _silent(message: str) -> None:
    pass


def _open_checked(settings: EncodeSettings) -> Export:
    """The model, its artifacts hashed once, here, not in each worker; the backend and compute type are
    checked too, so a bad choice fails before any worker starts."""
    try:
        export = open_export(settings.model)
        backend = choose_backend(export.manifest, "encoder", settings.runtime.backend)
        check_precision(backend, settings.runtime.compute)
    except (ManifestError, InterFormerRuntimeError) as err:
        raise EncodeRunError(str(err)) from err
    return export


def _connect(
    address: str | None, actors: int, threads: int | None, note: Callable[[str], None]
) -> tuple[RayCluster, int]:
    """The Ray cluster of the run and the threads of each of its ``actors``."""
    from .ray_cluster import connect

    try:
        cluster = connect(address or None, note)
    except RayEngineError as err:
        raise EncodeRunError(str(err)) from err
    try:
        return cluster, cluster.threads_per_actor(actors, threads)
    except RayEngineError as err:
        cluster.close()
        raise EncodeRunError(str(err)) from err


def _run(
    jobs: list[Job],
    settings: EncodeSettings,
    workers: int,
    batch: int,
    cluster: RayCluster | None,
    progress: ProgressReporter | None,
) -> tuple[list[Outcome], str | None]:
    """Encode ``jobs`` on ``cluster``, else locally (in this process for one worker, else in a process pool).
    Returns the outcomes and what interrupted the run (None: nothing)."""
    outcomes: list[Outcome] = []
    note = progress.note if progress is not None else _silent
    tick = progress.step("encoding", len(jobs)) if progress is not None else None

    def record(done: list[Outcome]) -> None:
        outcomes.extend(done)
        for outcome in done:
            if outcome.status == "failed":
                note(f"failed {outcome.name}: {outcome.message}")
        if tick is not None:
            tick(len(outcomes))

    with interrupt_on_sigterm():
        try:
            if cluster is not None:
                _run_on_cluster(cluster, jobs, settings, workers, batch, record)
            elif workers == 1:
                encode_here(jobs, settings, record)
            else:
                encode_in_pool(jobs, settings, workers, batch, record, note)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see runtime/signals.py)
            return outcomes, signal_name(stop)
        except BrokenProcessPool as err:
            raise EncodeRunError("a worker could not start or died (its error is printed above)") from err
    return outcomes, None


def _run_on_cluster(
    cluster: RayCluster,
    jobs: list[Job],
    settings: EncodeSettings,
    actors: int,
    batch: int,
    record: Callable[[list[Outcome]], None],
) -> None:
    from .ray_engine import encode_on_ray

    try:
        for done in encode_on_ray(jobs, settings, actors=actors, batch_size=batch):
            record(done)
    except RayEngineError as err:
        raise EncodeRunError(str(err)) from err
    finally:
        cluster.close()
