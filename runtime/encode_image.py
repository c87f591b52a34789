"""One image of an encode run into the feature store, the same way in every engine.

>>> settings = EncodeSettings("export/", RuntimeSettings(threads=2), max_side=1024)
>>> encoder = settings.open_encoder()
>>> job = Job(Path("photos/cat.jpg"), Path("features/cat.jpg.npz"), "cat.jpg")
>>> encode_into_store(encoder, settings, job)           # Outcome(name="cat.jpg", status="encoded", ...)

:func:`encode_into_store` is the per-image step of the local engine (:mod:`.encode_jobs`) and of the
Ray engine (:mod:`.ray_engine`): claim the store file (:mod:`.store`), check under the claim whether
it is up to date (:func:`is_up_to_date`, the resume rule), encode, write with
:func:`~.features.save_features`. Both engines therefore write the same files and can share a store.
:class:`EncodeSettings` is what a worker process or a Ray actor needs to build its encoder: one
frozen, picklable value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from interformer_edge.core.image_io import ImageReadError
from interformer_edge.core.messages import first_line
from interformer_edge.core.spec import DEFAULT_MAX_SIDE

from .errors import InterFormerRuntimeError
from .export import RuntimeSettings, open_export
from .features import STORAGE_DTYPES, read_meta, save_features
from .store import ClaimHeldError, claim

if TYPE_CHECKING:
    import numpy as np

    from .encoder import Encoder

# What becomes of an image: encoded; skipped (up to date); busy (another run is encoding it); failed.
STATUSES: tuple[str, ...] = ("encoded", "skipped", "busy", "failed")


@dataclass(frozen=True)
class EncodeSettings:
    """How every worker of a run encodes: the export folder ``model``, how to run its encoder
    (``runtime``: backend, threads per worker, OpenVINO's compute type), the longest side to encode
    at (``max_side``; 0: the model's own limit), the storage type of the features (``dtype``) and
    whether to encode images whose store file is up to date (``force``).

    ``runtime.threads`` None: a run divides the cores (local) or the cluster's CPUs (Ray) among its
    workers and hands each worker the settings with the number filled in.

    Raises:
        ValueError: ``dtype`` is not a storage type, or ``max_side`` is negative.
    """

    model: Path
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    max_side: int = DEFAULT_MAX_SIDE
    dtype: str = "float16"
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, not {self.dtype!r}")
        if self.max_side < 0:
            raise ValueError(f"max_side must be 0 (no limit but the model's) or more, not {self.max_side}")

    def with_threads(self, threads: int) -> EncodeSettings:
        """The same settings with ``threads`` CPU threads per worker."""
        return replace(self, runtime=replace(self.runtime, threads=threads))

    def open_encoder(self) -> Encoder:
        """The encoder of a worker. The artifact hashes are not checked again: the run checked them
        once before starting its workers (hashing a big model in each worker is slow)."""
        return open_export(self.model, verify_hashes=False).encoder(self.runtime, max_side=self.max_side)


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
    """What became of one image: ``status`` is one of :data:`STATUSES`; ``message`` says why it was
    busy or failed; ``seconds`` spent on it; ``worker``: the process or Ray actor that encoded it."""

    name: str
    status: str
    message: str = ""
    seconds: float = 0.0
    worker: str = ""


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


def failure_message(err: Exception) -> str:
    """The one line an image's failure is reported with: the message of an expected failure (an
    unreadable image, a runtime or file error), the type too for anything else (a bug, a backend crash)."""
    if isinstance(err, (ImageReadError, InterFormerRuntimeError, OSError, ValueError)):
        return first_line(err)
    return first_line(err, with_type=True)


def encode_into_store(
    encoder: Encoder,
    settings: EncodeSettings,
    job: Job,
    pixels: np.ndarray | None = None,
    image_sha256: str | None = None,
    worker: str = "",
) -> Outcome:
    """Claim ``job.target``, leave it if it is up to date (unless ``settings.force``), else encode the
    image and write its features; every failure is an outcome, never an exception.

    Args:
        encoder: the worker's encoder (of ``settings.model``).
        settings: the run's settings (``max_side``, ``dtype``, ``force``).
        job: the image and its store file.
        pixels: the image already decoded, ``(H, W, 3)`` uint8 RGB (the Ray engine decodes in its
            reading step); None: read from ``job.image``, a local path.
        image_sha256: the sha256 of the image file; None: hashed here, under the claim.
        worker: recorded in the outcome of an encoded image (per-worker rates in the summary).

    Returns:
        The :class:`Outcome`: ``encoded``, ``skipped``, ``busy`` (another run holds the claim) or ``failed``.
    """
    from .encoder import sha256_bytes

    started = time.perf_counter()
    try:
        with claim(job.target):
            if image_sha256 is None:
                image_sha256 = sha256_bytes(Path(job.image).read_bytes())
            if not settings.force and is_up_to_date(job.target, encoder.model_id, image_sha256, settings.max_side):
                return Outcome(job.name, "skipped")
            image = job.image if pixels is None else pixels
            features = encoder.encode(image, name=job.name, image_sha256=image_sha256)
            save_features(features, job.target, dtype=settings.dtype)
    except ClaimHeldError as err:
        return Outcome(job.name, "busy", str(err))
    except Exception as err:  # one image's failure, even a bug or a backend crash, must not end the run
        return Outcome(job.name, "failed", failure_message(err))
    return Outcome(job.name, "encoded", seconds=time.perf_counter() - started, worker=worker)
