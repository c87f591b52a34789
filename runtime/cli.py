"""``interformer-encode``: encode images into a feature store, and try clicks on stored features.

Encode a folder once (several processes, resumable), then answer clicks in real time::

    interformer-encode encode photos/ --model export/ --out features/ --workers 2
    interformer-encode click features/cat.jpg.npz --model export/ --at 120,200 --at 40,300,neg --out mask.png

The same from Python::

    from interformer_edge.runtime import ClickSession, Decoder, Encoder, load_features, save_features

    encoder = Encoder("export/", threads=2)
    save_features(encoder.encode("cat.jpg", max_side=1024), "features/cat.jpg.npz")
    session = ClickSession(Decoder("export/", threads=2), "features/cat.jpg.npz")
    mask = session.add_click(120, 200)                  # (H, W) bool, positive click at y=120, x=200
    mask = session.add_click(40, 300, positive=False)

Store layout: ``<out>/<path relative to the input folder>.npz`` (``a/cat.jpg`` → ``a/cat.jpg.npz``),
so names never collide. A store file is reused when its model id, image sha256 and ``max_side``
match; anything else is encoded again.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context, resource_tracker
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.markup import escape
from rich.table import Table

from interformer_edge.core.atomic import atomic_target
from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.image_io import ImageReadError
from interformer_edge.core.manifest import ManifestError, load_manifest
from interformer_edge.core.progress import ProgressReporter, cli_console
from interformer_edge.core.spec import DEFAULT_MAX_SIDE

from .backends import check_precision, choose_backend
from .errors import InterFormerRuntimeError
from .features import FEATURE_SUFFIX, STORAGE_DTYPES, model_id, read_meta, save_features
from .signals import exit_status, finish_in_hand, interrupt_on_sigterm, signal_name
from .store import ClaimHeldError, claim

EXIT_FAILURES = 1  # some images could not be encoded (the others were)
EXIT_BAD_INPUT = 2  # nothing was done
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM exits with 143

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=(
        "Encode images once into a feature store (float16 .npz files, one per image), then segment them "
        "with clicks in real time from the stored features. Torch-free: numpy + ONNX Runtime or OpenVINO."
    ),
)


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


# ------------------------------------------------------------------------------------------- worker

_ENCODER = None  # one per process, built by _init_worker
_SETTINGS: dict[str, object] = {}
_STOP: Any = None  # a multiprocessing Event shared with the parent: set when the run is being stopped


def _stop_requested() -> bool:
    return _STOP is not None and _STOP.is_set()


def _init_worker(
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
            outcomes.append(Outcome(job.name, "failed", str(err).splitlines()[0] if str(err) else type(err).__name__))
        except Exception as err:  # a bug or backend crash on one image must not end the run either
            outcomes.append(Outcome(job.name, "failed", f"{type(err).__name__}: {err}"))
    return outcomes


# ---------------------------------------------------------------------------------------- commands


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _summary_table(outcomes: list[Outcome], total: int, seconds: float, interrupted: bool | str) -> Table:
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


@app.command()
def encode(
    source: Annotated[Path, typer.Argument(help="A folder of images (jpg, png, bmp, tif, webp) or one image file.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Export folder (with manifest.json) of the model.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Feature store folder; created if missing. Each image becomes <out>/<relative path>.npz.",
        ),
    ],
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "--actors",
            "-w",
            min=1,
            help="Encoders running side by side: local processes, or Ray actors "
            "(one inference session each) with --engine ray.",
        ),
    ] = 1,
    threads: Annotated[
        int,
        typer.Option("--threads", "-t", min=0, help="CPU threads per worker; 0: the cores divided among the workers."),
    ] = 0,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            "--batch-size",
            "-b",
            min=1,
            help="Images handed to a worker (or Ray actor) at a time (the encoder "
            "runs one image per pass; larger batches mean less scheduling "
            "overhead, smaller ones a smoother progress bar).",
        ),
    ] = 4,
    max_side: Annotated[
        int,
        typer.Option(
            "--max-side",
            min=0,
            help="Shrink images whose longer side exceeds this many pixels "
            "before encoding (masks still come back at full size). "
            "Memory grows with the fourth power of the side (about "
            "1.2 GiB at 1024 px for the default model); an image that "
            "would not fit in the available memory fails with the "
            "estimate. 0: full size (up to the model's limit).",
        ),
    ] = DEFAULT_MAX_SIDE,
    backend: Annotated[
        str, typer.Option(help="auto (ONNX Runtime if available, else OpenVINO), onnxruntime or openvino.")
    ] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="OpenVINO precision: f32 (default; exact), bf16, f16, or device "
            "(the CPU's default, bf16 on recent x86)."
        ),
    ] = "f32",
    dtype: Annotated[
        str, typer.Option(help="Storage type of the features: float16 (half the size) or float32.")
    ] = "float16",
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", "-r", help="Also encode images in sub-folders.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Encode every image again, even if its features are up to date.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="local (processes on this machine) or ray (a Ray cluster: Ray "
            "Data reads the images, an actor pool encodes them; needs the "
            "\\[ray] extra). With ray, SOURCE may also be a list file (.txt) "
            "of paths or URIs, one a line, readable by every node."
        ),
    ] = "local",
    address: Annotated[
        str,
        typer.Option(
            help="With --engine ray: the cluster to use, 'auto' (the one running "
            "on this node) or HEAD:6379 (its head node); empty: $RAY_ADDRESS, "
            "else start Ray on this machine for the run. The images, --model "
            "and --out must be paths every node sees (a shared filesystem)."
        ),
    ] = "",
) -> None:
    """Encode images into a feature store; resumable, an unreadable image is reported and skipped.

    Runs may share a store: an image being encoded is claimed (.NAME.npz.lock), and other runs leave it.

    Ctrl-C or SIGTERM: the images in hand are finished, the rest not started, a summary is printed.

    Progress goes to stderr (bars on a terminal, lines in a log), the summary to stdout.

    Exit status: 0 all images encoded or up to date; 1 some images failed (the rest were encoded);
    2 bad arguments or model (nothing done); 130 Ctrl-C, 143 SIGTERM (finished files are kept).
    """
    console = cli_console(stderr=True)
    if engine not in ("local", "ray"):
        console.print("[red]error:[/] --engine must be local or ray")
        raise typer.Exit(EXIT_BAD_INPUT)
    if dtype not in STORAGE_DTYPES:
        console.print(f"[red]error:[/] --dtype must be one of {', '.join(STORAGE_DTYPES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if not source.exists():
        console.print(f"[red]error:[/] {escape(str(source))} does not exist")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        manifest = load_manifest(model)  # hashes every artifact once, here, not in each worker
        check_precision(choose_backend(manifest, "encoder", backend), precision)  # fail fast, before any worker
    except (ManifestError, InterFormerRuntimeError) as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if engine == "ray":
        from .ray_engine import RayEngineError, connect, is_list_file, list_file_jobs

        try:
            jobs = list_file_jobs(source, out) if is_list_file(source) else list_jobs(source, out, recursive)
        except RayEngineError as err:
            console.print(f"[red]error:[/] {escape(str(err))}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    else:
        from .ray_engine import is_list_file  # the file-kind check only: no ray is imported

        if is_list_file(source):
            console.print(
                f"[red]error:[/] {escape(str(source))} is an image list: lists are read by --engine ray; "
                "give the local engine a folder or one image"
            )
            raise typer.Exit(EXIT_BAD_INPUT)
        jobs = list_jobs(source, out, recursive)
    if not jobs:
        console.print(f"no images found in {source}")
        raise typer.Exit(0)
    workers = min(workers, len(jobs))
    if engine == "ray":
        try:
            cluster = connect(address or None, console)  # one clear line if it cannot be reached
            threads = cluster.threads_per_actor(workers, threads)
        except RayEngineError as err:
            console.print(f"[red]error:[/] {escape(str(err))}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    threads = threads or max(1, _cpu_count() // workers)
    console.print(
        f"model {model_id(manifest)} · {len(jobs)} images · {workers} worker(s) × {threads} thread(s) → {out}"
    )
    init_args = (str(model), backend, threads, precision, max_side, dtype, force)  # max_side 0: full size

    outcomes: list[Outcome] = []
    started = time.perf_counter()
    interrupted: str | bool = False
    exit_code = 0
    with ProgressReporter(console) as progress, interrupt_on_sigterm():
        tick = progress.step("encoding", len(jobs))

        def record(done: list[Outcome]) -> None:
            outcomes.extend(done)
            for outcome in done:
                if outcome.status == "failed":
                    progress.note(f"failed {outcome.name}: {outcome.message}")
            tick(len(outcomes))

        try:
            if engine == "ray":
                try:
                    for done in cluster.encode(jobs, *init_args, actors=workers, batch_size=batch):
                        record(done)
                except RayEngineError as err:
                    console.print(f"[red]error:[/] {escape(str(err))}")
                    raise typer.Exit(EXIT_BAD_INPUT) from None
                finally:
                    cluster.close()
            elif workers == 1:
                _init_worker(*init_args, in_pool=False)
                for job in jobs:  # one at a time; an interrupt finishes and counts the image in hand
                    with finish_in_hand():
                        record(encode_chunk([job]))
            else:
                _encode_in_pool(jobs, workers, batch, init_args, record, progress)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see runtime/signals.py)
            interrupted, exit_code = signal_name(stop), exit_status(stop)
        except BrokenProcessPool:
            console.print("[red]error:[/] a worker could not start or died (its error is printed above)")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    report = cli_console()  # the summary is the command's result: stdout (progress and live failures: stderr)
    report.print(_summary_table(outcomes, len(jobs), time.perf_counter() - started, interrupted))
    for outcome in outcomes:
        if outcome.status == "failed":
            report.print(f"failed: {outcome.name}: {outcome.message}", markup=False, highlight=False)
    if interrupted:
        raise typer.Exit(exit_code)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(EXIT_FAILURES)


def _encode_in_pool(
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
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(*init_args, True, stop))
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


def _parse_click(text: str) -> tuple[int, int, bool]:
    parts = [p.strip() for p in text.split(",")]
    if (
        len(parts) not in (2, 3)
        or not all(p.lstrip("-").isdigit() for p in parts[:2])
        or (len(parts) == 3 and parts[2] not in ("pos", "neg"))
    ):
        raise typer.BadParameter(f"{text!r}: expected Y,X or Y,X,pos or Y,X,neg")
    return int(parts[0]), int(parts[1]), len(parts) == 2 or parts[2] == "pos"


@app.command()
def click(
    features: Annotated[Path, typer.Argument(help="A feature file written by `encode`.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Export folder of the model that encoded it.")],
    at: Annotated[
        list[str],
        typer.Option(
            "--at",
            help="A click as Y,X (positive) or Y,X,neg (negative), in pixels of the original image; repeat, in order.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Write the final mask here (PNG, 0/255, original size).")
    ] = Path("mask.png"),
    threads: Annotated[int, typer.Option("--threads", "-t", min=0, help="Decoder CPU threads; 0: all.")] = 0,
    backend: Annotated[str, typer.Option(help="auto, onnxruntime or openvino.")] = "auto",
    precision: Annotated[str, typer.Option(help="OpenVINO precision: f32, bf16, f16 or device.")] = "f32",
    zoom_in: Annotated[
        bool | None,
        typer.Option(
            "--zoom-in/--no-zoom-in", help="Zoom-in from the second click (default: when the model has refine stages)."
        ),
    ] = None,
) -> None:
    """Replay clicks on stored features and save the mask; prints the time of each click."""
    from .session import ClickSession, Decoder

    console = cli_console()
    clicks = [_parse_click(text) for text in at]
    try:
        decoder = Decoder(model, backend=backend, threads=threads or None, precision=precision)
        session = ClickSession(decoder, features, zoom_in=zoom_in)
        for y, x, positive in clicks:
            started = time.perf_counter()
            mask = session.add_click(y, x, positive)
            console.print(
                f"click ({y}, {x}, {'pos' if positive else 'neg'}): {mask.mean():.1%} of the image, "
                f"{(time.perf_counter() - started) * 1000:.1f} ms"
            )
    except (ManifestError, InterFormerRuntimeError) as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:  # all or nothing, and a missing or unwritable folder is one line, not a traceback
        with atomic_target(out) as tmp:
            Image.fromarray(np.where(session.mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    except OSError as err:
        console.print(
            f"[red]error:[/] cannot write {escape(str(out))}: {escape(str(err.strerror or err))}", highlight=False
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"wrote {out} ({session.width}x{session.height}, {decoder.backend})")


if __name__ == "__main__":  # python -m interformer_edge.runtime.cli
    app()
