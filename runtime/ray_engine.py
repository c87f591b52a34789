# Over 400 lines on purpose: the image-list, per-image and driver stages of one Ray Data pipeline share its row schema.
"""The Ray engine of ``interformer-encode encode --engine ray``: one encode run spread over a Ray cluster.

Ray Data turns the image list into a dataset; a ``map`` step reads each image (a path, or a URI
through pyarrow's filesystems), hashes it, leaves out what the store already holds (the resume rule
of the local engine, :func:`.encode_jobs.is_up_to_date`) and decodes the rest to ``(H, W, 3)`` uint8 RGB;
``map_batches`` runs :class:`EncoderActor`, a pool of actors that each hold one ONNX Runtime /
OpenVINO session (:class:`.encoder.Encoder`). An actor handles each image as the local engine's
workers do: it claims the store file (:mod:`.store`, so runs sharing a store never encode an image
twice), checks it again under the claim, encodes (resize, normalize, pad, graph) and writes it with
:func:`.features.save_features` — the same function, hence the same files. Only small outcome rows
(name, status, time, actor) come back to the driver, which shows progress and the summary exactly
as the local engine does.

The reading tasks reserve no CPU (``num_cpus=0``) and at most one per actor runs at a time: they
are short and mostly wait on storage, while the actors hold the CPUs (``--threads`` each). Tasks
that reserved CPUs of their own would never be scheduled on a cluster whose CPUs the actors fill.

``ray`` is imported only here and only when this engine runs: the runtime stays importable (and
the local engine usable) without the ``[ray]`` extra.

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
import posixpath
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from rich.console import Console

from interformer_edge.core.image_io import ImageReadError, decode_rgb
from interformer_edge.core.messages import first_line

from .encode_jobs import Job, Outcome, is_up_to_date
from .encoder import sha256_bytes
from .errors import InterFormerRuntimeError
from .features import FEATURE_SUFFIX, save_features
from .store import ClaimHeldError, claim

LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")  # SOURCE files read as image lists
CONNECT_TIMEOUT_S = 5.0  # to reach a cluster's head before handing the address to Ray
ACTOR_TASK_RETRIES = 2  # a batch whose actor died is retried this often on a restarted actor
INSTALL_HINT = 'the Ray engine needs the [ray] extra: pip install "interformer-edge[ray]"'
# Columns of the rows that come back to the driver (one row per image).
OUTCOME_COLUMNS: tuple[str, ...] = ("name", "status", "message", "seconds", "worker")


class RayEngineError(InterFormerRuntimeError):
    """Ray is missing or unreachable, the cluster cannot host the actors, or the run could not start."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayEngineError(INSTALL_HINT) from None
    return ray


# ------------------------------------------------------------------------------------- image lists


def is_list_file(source: Path) -> bool:
    """Whether ``source`` is an image list (a ``.txt`` / ``.lst`` / ``.list`` file) rather than an image."""
    return source.is_file() and source.suffix.lower() in LIST_SUFFIXES


def _is_uri(entry: str) -> bool:
    scheme = urlparse(entry).scheme
    return len(scheme) > 1  # one letter: a Windows drive, not a scheme


def list_file_jobs(list_file: Path, out: Path) -> list[Job]:
    """The images named in ``list_file`` (one path or URI a line; blank lines and ``#`` comments skipped).

    Relative paths are relative to the list file's folder; ``file://`` URIs are local paths; other
    URIs (``s3://``, ``gs://``, ``hdfs://``, …) are read with pyarrow's filesystems on the nodes.
    Each image is stored under its path relative to the deepest folder common to all entries
    (``/data/a/cat.jpg`` and ``/data/b/dog.jpg`` → ``a/cat.jpg.npz``, ``b/dog.jpg.npz``; a URI
    counts as the path ``/scheme/host/path``), so names never collide. Duplicate entries are listed once.
    """
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RayEngineError(f"cannot read the image list {list_file}: {first_line(err)}") from None
    images: dict[str, Path | str] = {}  # key (absolute path, or host + path of a URI) -> what to read
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parsed = urlparse(entry)
        if _is_uri(entry) and parsed.scheme != "file":
            images.setdefault(f"/{parsed.scheme}/{parsed.netloc}{parsed.path}", entry)  # absolute, like paths
            continue
        path = Path(unquote(parsed.path)) if _is_uri(entry) else Path(entry)
        path = (list_file.parent / path).resolve() if not path.is_absolute() else path
        images.setdefault(path.as_posix(), path)
    if not images:
        return []
    common = posixpath.commonpath([posixpath.dirname(key) for key in images])  # every key is absolute
    jobs = [
        Job(image, out / (posixpath.relpath(key, common) + FEATURE_SUFFIX), posixpath.relpath(key, common))
        for key, image in images.items()
    ]
    return sorted(jobs, key=lambda job: job.name)


def read_image_bytes(image: Path | str) -> bytes:
    """The bytes of a local image file or of a URI (pyarrow filesystems: s3, gs, hdfs, …).

    Raises:
        ImageReadError: missing or unreadable, with the reason on one line.
    """
    if isinstance(image, Path):
        if not image.is_file():
            raise ImageReadError(f"image not found: {image}")
        return image.read_bytes()
    try:
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(image)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except Exception as err:  # pyarrow raises its own types (ArrowInvalid, OSError, …): one message for all
        raise ImageReadError(f"cannot read {image}: {first_line(err)}") from None


# ------------------------------------------------------------------------------- the two stages


def read_and_decode(row: dict[str, Any], model: str, max_side: int | None, force: bool) -> dict[str, Any]:
    """The ``map`` step of one image: read, hash, leave it out if stored (the local engine's rule), decode.

    In: ``image`` (a path or URI string), ``is_uri``, ``target``, ``name``. Out: the same plus
    ``status`` (``"encode"``, ``"skipped"`` or ``"failed"``), ``message``, ``sha256``, ``seconds``
    spent here and ``rgb``: the ``(H, W, 3)`` uint8 pixels to encode, ``(0, 0, 3)`` when there is
    nothing to encode.
    """
    started = time.perf_counter()
    image: Path | str = row["image"] if row["is_uri"] else Path(row["image"])
    result = {**row, "status": "encode", "message": "", "sha256": "", "rgb": np.zeros((0, 0, 3), np.uint8)}
    try:
        data = read_image_bytes(image)
        result["sha256"] = sha256_bytes(data)
        if not force and is_up_to_date(Path(row["target"]), model, result["sha256"], max_side):
            result["status"] = "skipped"
        else:
            result["rgb"] = decode_rgb(data, str(image))
    except (ImageReadError, InterFormerRuntimeError, OSError, ValueError) as err:
        result.update(status="failed", message=first_line(err))
    except Exception as err:  # a bug on one image must not end the run
        result.update(status="failed", message=first_line(err, with_type=True))
    result["seconds"] = time.perf_counter() - started
    return result


class EncoderActor:
    """One encoder session per Ray actor; ``__call__`` encodes a batch of decoded images and stores them.

    The batch is Ray Data's numpy format: a dict of equally long columns, one row per image, as
    :func:`read_and_decode` made them. Returns the :data:`OUTCOME_COLUMNS` of every row.
    """

    def __init__(
        self, model: str, backend: str, threads: int, precision: str, max_side: int | None, dtype: str, force: bool
    ) -> None:
        import ray

        from .encoder import Encoder

        # The driver verified the artifact hashes once; actors only check sizes (hashing is slow for big models).
        self.encoder = Encoder(
            model, backend=backend, threads=threads, precision=precision, max_side=max_side, verify=False
        )
        self.max_side, self.dtype, self.force = max_side, dtype, force
        # host/node/pid: several Ray nodes can share a host (and a restarted actor gets a new pid).
        node = ray.get_runtime_context().get_node_id()[:6]
        self.worker = f"actor {socket.gethostname()}/{node}:{os.getpid()}"

    def encode_row(self, rgb: np.ndarray, name: str, sha256: str, target: Path) -> str:
        """Encode one decoded image into ``target`` under its claim, as the local engine does; returns
        ``"encoded"``, or ``"skipped"`` when another run stored it since it was read."""
        with claim(target):
            if not self.force and is_up_to_date(target, self.encoder.model_id, sha256, self.max_side):
                return "skipped"
            features = self.encoder.encode(rgb, name=name, image_sha256=sha256)
            save_features(features, target, dtype=self.dtype)  # the one writer of every engine
        return "encoded"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: dict[str, list[Any]] = {column: [] for column in OUTCOME_COLUMNS}
        for index, name in enumerate(batch["name"]):
            status, message = str(batch["status"][index]), str(batch["message"][index])
            started = time.perf_counter()
            if status == "encode":
                try:
                    status = self.encode_row(
                        batch["rgb"][index], str(name), str(batch["sha256"][index]), Path(str(batch["target"][index]))
                    )
                except ClaimHeldError as err:
                    status, message = "busy", str(err)
                except (ImageReadError, InterFormerRuntimeError, OSError, ValueError) as err:
                    status, message = "failed", first_line(err)
                except Exception as err:  # a bug or backend error on one image must not end the run
                    status, message = "failed", first_line(err, with_type=True)
            rows["name"].append(str(name))
            rows["status"].append(status)
            rows["message"].append(message)
            rows["seconds"].append(float(batch["seconds"][index]) + time.perf_counter() - started)
            rows["worker"].append(self.worker if status == "encoded" else "")
        return {column: np.asarray(values) for column, values in rows.items()}


# ----------------------------------------------------------------------------------- the driver


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto`` or a bare host."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        return None
    return (parsed.hostname, port) if parsed.hostname and port else None


def _check_reachable(address: str) -> None:
    """Fail within :data:`CONNECT_TIMEOUT_S` on a closed port or an unknown host (Ray itself retries for long)."""
    target = _host_port(address)
    if target is None:
        if address != "auto":
            raise RayEngineError(
                f"--address {address!r}: expected auto or HEAD:PORT (the head node's port, 6379 by default)"
            )
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RayEngineError(f"cannot reach a Ray cluster at {address}: {reason}") from None


@dataclass
class RayCluster:
    """A connection to Ray for one encode run; ``owned``: this run started it (and stops it in :meth:`close`)."""

    owned: bool
    started_in: float  # seconds spent connecting (or starting Ray)

    def threads_per_actor(self, actors: int, threads: int) -> int:
        """Threads (and Ray CPUs) of each actor: ``threads``, or 0 for the cluster's CPUs divided among
        the actors. Raises :class:`RayEngineError` if the cluster's nodes cannot host ``actors`` of them."""
        ray = _ray()
        nodes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
        total = sum(nodes)
        threads = threads or max(1, int(total // actors))
        slots = sum(int(cpus // threads) for cpus in nodes)
        if slots < actors:
            raise RayEngineError(
                f"the Ray cluster ({len(nodes)} node(s), {total:g} CPUs) fits {slots} actor(s) of {threads} "
                f"thread(s), not {actors}: lower --actors or --threads"
            )
        return threads

    def encode(
        self,
        jobs: Sequence[Job],
        model: str,
        backend: str,
        threads: int,
        precision: str,
        max_side: int | None,
        dtype: str,
        force: bool,
        *,
        actors: int,
        batch_size: int,
        actor_class: type[EncoderActor] = EncoderActor,
    ) -> Iterator[list[Outcome]]:
        """Encode ``jobs`` on the cluster; yields the outcomes of each finished batch as it arrives.

        Every job gets exactly one outcome. Raises :class:`RayEngineError` when the run fails before
        any outcome (e.g. the actors cannot load the model); a failure later ends the run with the
        images not stored reported as failed (what was stored stays, a re-run resumes).
        """
        ray = _ray()
        from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

        from interformer_edge.core.manifest import load_manifest

        from .features import model_id

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the command's own progress bar shows the run
        context.max_errored_blocks = -1  # a batch lost with its crashed actor is reported, not fatal
        # Ray Data logs notices and, for a crashed actor, a traceback; the outcomes report both ways a batch fails.
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)

        model_key = model_id(load_manifest(model, verify_hashes=False))
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
                    fn_kwargs={"model": model_key, "max_side": max_side, "force": force},
                    num_cpus=0,
                    compute=TaskPoolStrategy(size=actors),
                )
                .map_batches(
                    actor_class,
                    batch_size=batch_size,
                    batch_format="numpy",
                    compute=ActorPoolStrategy(size=actors),
                    num_cpus=threads,
                    fn_constructor_kwargs={
                        "model": model,
                        "backend": backend,
                        "threads": threads,
                        "precision": precision,
                        "max_side": max_side,
                        "dtype": dtype,
                        "force": force,
                    },
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

    def close(self) -> None:
        """Stop Ray if this run started it; otherwise only leave the cluster as it was."""
        if self.owned:
            _ray().shutdown()


def _has_auth_token() -> bool:
    """Whether a Ray cluster token is at hand: ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token`` (where ``ray start`` and ``ray get-auth-token --generate`` put it)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def connect(address: str | None, console: Console | None = None) -> RayCluster:
    """Connect to the Ray cluster at ``address`` (``auto`` or ``host:port``; ``ray://`` is refused), or with
    None to ``$RAY_ADDRESS``, else start a new Ray instance on this machine for the run. A process
    already connected to Ray (``ray.init`` called) keeps its connection.

    Raises:
        RayEngineError: ray is not installed, or the cluster cannot be reached (one line).
    """
    if address:  # fail fast on a closed port, even in a process already connected elsewhere
        _check_reachable(address)
    if address and address.startswith("ray://"):
        # Verified with ray 2.60: Ray Client connects, but running any dataset through it fails inside Ray
        # Data ("'Worker' object has no attribute 'core_worker'").
        raise RayEngineError(
            f"{address}: Ray Data does not run through Ray Client (ray://); run the command on a node of the "
            "cluster with --address auto, from a machine on its network with --address HEAD:6379, or as a "
            "Ray job (ray job submit --address http://HEAD:8265 -- interformer-encode ... --address auto)"
        )
    # Ray reads these when it is imported. The core worker's own log would add a warning-worded line
    # about restartable actors (ray issue 53727); Ray's errors still reach us as exceptions.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if address and address != "auto" and _has_auth_token():
        # Ray (2.60) sends the cluster token only when it starts Ray or finds it with "auto"; a driver that
        # names the address of a cluster with token authentication (Ray's default) is refused without it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray = _ray()
    started = time.perf_counter()
    if ray.is_initialized():
        return RayCluster(owned=False, started_in=0.0)
    # Ray's notices (token authentication, deprecations) are not the user's business; its errors are.
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # "local": a new instance even when this machine runs a cluster of `ray start` (ray.init() would join
        # that one; --address auto is the way to ask for it).
        address = "local"
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **options)
    except Exception as err:  # ConnectionError, RuntimeError, ValueError, grpc errors …
        where = {None: os.environ.get("RAY_ADDRESS", ""), "local": "this machine"}.get(address, address)
        raise RayEngineError(f"cannot connect to Ray ({where}): {first_line(err)}") from None
    cluster = RayCluster(owned=True, started_in=time.perf_counter() - started)
    if console is not None:
        console.print(
            f"Ray {ray.__version__}: connected in {cluster.started_in:.1f} s "
            f"({ray.cluster_resources().get('CPU', 0):g} CPUs)"
        )
    return cluster
