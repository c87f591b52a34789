"""The Ray engine of an encode run: the images of a run spread over a Ray cluster (``--engine ray``).

Ray Data turns the image list into a dataset; a ``map`` step (:func:`read_and_decode`) reads each
image (a path, or a URI through pyarrow's filesystems), hashes it, leaves out what the store already
holds (the resume rule, :func:`~.encode_image.is_up_to_date`) and decodes the rest to ``(H, W, 3)``
uint8 RGB; ``map_batches`` runs :class:`EncoderActor`, a pool of actors that each hold one ONNX
Runtime / OpenVINO session built from the run's :class:`~.encode_image.EncodeSettings`. An actor
stores each image with :func:`~.encode_image.encode_into_store`, the local engine's per-image step
(claim, check again under the claim, encode, write), hence the same files. Only small outcome rows
(name, status, time, actor) come back to the driver, which shows progress and the summary exactly
as the local engine does. Connecting to the cluster: :mod:`.ray_cluster`.

The reading tasks reserve no CPU (``num_cpus=0``) and at most one per actor runs at a time: they
are short and mostly wait on storage, while the actors hold the CPUs (``threads`` each). Tasks
that reserved CPUs of their own would never be scheduled on a cluster whose CPUs the actors fill.

Failure handling: an unreadable image or a failed encode is an outcome (``failed``) and never
stops the run. A crashed actor (segfault, out of memory, a lost node) is restarted and its batch
retried ``ACTOR_TASK_RETRIES`` times; after that the batch's images (and those of a batch queued
on the same actor) are reported as failed and the run goes on. Store files are written atomically
(temporary file, then rename), so a crash never leaves a half-written one, and a re-run encodes
only what is missing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.image_io import decode_rgb
from interformer_edge.core.messages import first_line

from .encode_image import EncodeSettings, Job, Outcome, encode_into_store, failure_message, is_up_to_date
from .export import open_export
from .image_sources import read_image_bytes
from .ray_cluster import RayEngineError, import_ray

ACTOR_TASK_RETRIES = 2  # a batch whose actor died is retried this often on a restarted actor
# Columns of the rows that come back to the driver (one row per image).
OUTCOME_COLUMNS: tuple[str, ...] = ("name", "status", "message", "seconds", "worker")


def _job_of(row: dict[str, Any]) -> Job:
    """The job of a dataset row (its image a URI string or a local path)."""
    image = str(row["image"])
    return Job(image if row["is_uri"] else Path(image), Path(str(row["target"])), str(row["name"]))


def read_and_decode(row: dict[str, Any], model_id: str, settings: EncodeSettings) -> dict[str, Any]:
    """The ``map`` step of one image: read, hash, leave it out if stored (the resume rule), decode.

    In: ``image`` (a path or URI string), ``is_uri``, ``target``, ``name``. Out: the same plus
    ``status`` (``"encode"``, ``"skipped"`` or ``"failed"``), ``message``, ``sha256``, ``seconds``
    spent here and ``rgb``: the ``(H, W, 3)`` uint8 pixels to encode, ``(0, 0, 3)`` when there is
    nothing to encode. ``model_id``: the id of ``settings.model`` (read once by the driver).
    """
    started = time.perf_counter()
    job = _job_of(row)
    result = {**row, "status": "encode", "message": "", "sha256": "", "rgb": np.zeros((0, 0, 3), np.uint8)}
    try:
        from .encoder import sha256_bytes

        data = read_image_bytes(job.image)
        result["sha256"] = sha256_bytes(data)
        if not settings.force and is_up_to_date(job.target, model_id, result["sha256"], settings.max_side):
            result["status"] = "skipped"
        else:
            result["rgb"] = decode_rgb(data, str(job.image))
    except Exception as err:  # one image's failure, even a bug, must not end the run
        result.update(status="failed", message=failure_message(err))
    result["seconds"] = time.perf_counter() - started
    return result


class EncoderActor:
    """One encoder session per Ray actor; ``__call__`` encodes a batch of decoded images and stores them.

    The batch is Ray Data's numpy format: a dict of equally long columns, one row per image, as
    :func:`read_and_decode` made them. Returns the :data:`OUTCOME_COLUMNS` of every row.
    """

    def __init__(self, settings: EncodeSettings) -> None:
        import ray

        self.settings = settings
        self.encoder = settings.open_encoder()
        # host/node/pid: several Ray nodes can share a host (and a restarted actor gets a new pid).
        node = ray.get_runtime_context().get_node_id()[:6]
        self.worker = f"actor {socket.gethostname()}/{node}:{os.getpid()}"

    def encode_row(self, job: Job, rgb: np.ndarray, sha256: str) -> Outcome:
        """Store one decoded image, ``rgb`` ``(H, W, 3)`` uint8, as the local engine does; ``skipped`` when
        another run stored it since it was read."""
        return encode_into_store(self.encoder, self.settings, job, pixels=rgb, image_sha256=sha256, worker=self.worker)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: dict[str, list[Any]] = {column: [] for column in OUTCOME_COLUMNS}
        for index in range(len(batch["name"])):
            row = {column: values[index] for column, values in batch.items()}
            started = time.perf_counter()
            job = _job_of(row)
            if row["status"] == "encode":
                outcome = self.encode_row(job, row["rgb"], str(row["sha256"]))
            else:  # skipped or failed while reading
                outcome = Outcome(job.name, str(row["status"]), str(row["message"]))
            outcome = replace(outcome, seconds=float(row["seconds"]) + time.perf_counter() - started)
            for column in OUTCOME_COLUMNS:
                rows[column].append(getattr(outcome, column))
        return {column: np.asarray(values) for column, values in rows.items()}


def encode_on_ray(
    jobs: Sequence[Job],
    settings: EncodeSettings,
    *,
    actors: int,
    batch_size: int,
    actor_class: type[EncoderActor] = EncoderActor,
) -> Iterator[list[Outcome]]:
    """Encode ``jobs`` on the Ray cluster this process is connected to (:func:`~.ray_cluster.connect`) with
    ``actors`` actors of ``settings.runtime.threads`` threads (and Ray CPUs) each; yields the outcomes of
    each finished batch as it arrives.

    Every job gets exactly one outcome. Raises :class:`~.ray_cluster.RayEngineError` when the run fails
    before any outcome (e.g. the actors cannot load the model); a failure later ends the run with the
    images not stored reported as failed (what was stored stays, a re-run resumes).
    """
    threads = settings.runtime.threads
    if not threads:
        raise ValueError("settings.runtime.threads: the threads of each actor (see RayCluster.threads_per_actor)")
    ray = import_ray()
    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the command's own progress bar shows the run
    context.max_errored_blocks = -1  # a batch lost with its crashed actor is reported, not fatal
    # Ray Data logs notices and, for a crashed actor, a traceback; the outcomes report both ways a batch fails.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)

    model_id = open_export(settings.model, verify_hashes=False).model_id
    rows = [
        {"image": str(job.image), "is_uri": isinstance(job.image, str), "target": str(job.target), "name": job.name}
        for job in jobs
    ]
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options (max_task_retries) this way but has no other one yet;
        # without it a crash that repeats on one image would be retried forever.
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = (
            ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
            .map(
                read_and_decode,
                fn_kwargs={"model_id": model_id, "settings": settings},
                num_cpus=0,
                compute=TaskPoolStrategy(size=actors),
            )
            .map_batches(
                actor_class,
                batch_size=batch_size,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=actors),
                num_cpus=threads,
                fn_constructor_kwargs={"settings": settings},
                max_restarts=-1,
                max_task_retries=ACTOR_TASK_RETRIES,
            )
        )
    reported: set[str] = set()
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            outcomes = [
                Outcome(str(name), str(status), str(message), float(seconds), str(worker))
                for name, status, message, seconds, worker in zip(
                    *(batch[column] for column in OUTCOME_COLUMNS), strict=True
                )
            ]
            reported.update(outcome.name for outcome in outcomes)
            yield outcomes
    except Exception as err:  # Ray wraps everything in its own types; the first line says what happened
        if not reported:
            raise RayEngineError(f"the Ray run failed before encoding anything: {first_line(err)}") from None
        reason = f"not encoded: the Ray run stopped ({first_line(err)}); re-run to finish"
    else:
        reason = (
            f"not encoded: lost with its batch when a Ray actor died (crash or out of memory; "
            f"{ACTOR_TASK_RETRIES + 1} attempt(s)); re-run to retry"
        )
    lost = [Outcome(job.name, "failed", reason) for job in jobs if job.name not in reported]
    if lost:
        yield lost
