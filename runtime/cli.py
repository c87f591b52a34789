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

import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.markup import escape

from interformer_edge.core.atomic import atomic_target
from interformer_edge.core.manifest import Manifest, ManifestError, load_manifest
from interformer_edge.core.progress import ProgressReporter, cli_console
from interformer_edge.core.spec import DEFAULT_MAX_SIDE

from .backends import check_precision, choose_backend
from .encode_jobs import Job, Outcome, encode_here, encode_in_pool, list_jobs, summary_table, threads_per_worker
from .errors import InterFormerRuntimeError
from .features import STORAGE_DTYPES, model_id
from .signals import exit_status, interrupt_on_sigterm, signal_name

if TYPE_CHECKING:
    from .ray_engine import RayCluster


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


# ------------------------------------------------------------------------------------------ encode


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
    _check_options(console, engine, dtype, source)
    manifest = _load_model(console, model, backend, precision)
    jobs = _find_jobs(console, source, out, recursive, engine)
    if not jobs:
        console.print(f"no images found in {source}")
        raise typer.Exit(0)
    workers = min(workers, len(jobs))
    if engine == "ray":
        cluster, threads = _connect_cluster(console, address, workers, threads)
    else:
        cluster, threads = None, threads_per_worker(workers, threads)
    console.print(
        f"model {model_id(manifest)} · {len(jobs)} images · {workers} worker(s) × {threads} thread(s) → {out}"
    )
    init_args = (str(model), backend, threads, precision, max_side, dtype, force)  # max_side 0: full size

    started = time.perf_counter()
    outcomes, interrupted, exit_code = _run(console, jobs, init_args, workers, batch, cluster)
    _print_summary(outcomes, len(jobs), time.perf_counter() - started, interrupted)
    if interrupted:
        raise typer.Exit(exit_code)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(EXIT_FAILURES)


# ----------------------------------------------------------------------------------- encode: steps


def _bad_input(console: Console, message: str) -> typer.Exit:
    """Print ``message`` (console markup) as an error; returns the exit (nothing was done) for the caller to raise."""
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(EXIT_BAD_INPUT)


def _check_options(console: Console, engine: str, dtype: str, source: Path) -> None:
    if engine not in ("local", "ray"):
        raise _bad_input(console, "--engine must be local or ray")
    if dtype not in STORAGE_DTYPES:
        raise _bad_input(console, f"--dtype must be one of {', '.join(STORAGE_DTYPES)}")
    if not source.exists():
        raise _bad_input(console, f"{escape(str(source))} does not exist")


def _load_model(console: Console, model: Path, backend: str, precision: str) -> Manifest:
    """The model's manifest, its artifacts hashed once, here, not in each worker; the backend and
    precision are checked too, so a bad choice fails before any worker starts."""
    try:
        manifest = load_manifest(model)
        check_precision(choose_backend(manifest, "encoder", backend), precision)
    except (ManifestError, InterFormerRuntimeError) as err:
        raise _bad_input(console, escape(str(err))) from None
    return manifest


def _find_jobs(console: Console, source: Path, out: Path, recursive: bool, engine: str) -> list[Job]:
    """The images of the run: a folder or one image; with the Ray engine also a list file."""
    if engine == "ray":
        from .ray_engine import RayEngineError, is_list_file, list_file_jobs

        try:
            return list_file_jobs(source, out) if is_list_file(source) else list_jobs(source, out, recursive)
        except RayEngineError as err:
            raise _bad_input(console, escape(str(err))) from None
    from .ray_engine import is_list_file  # the file-kind check only: no ray is imported

    if is_list_file(source):
        raise _bad_input(
            console,
            f"{escape(str(source))} is an image list: lists are read by --engine ray; "
            "give the local engine a folder or one image",
        )
    return list_jobs(source, out, recursive)


def _connect_cluster(console: Console, address: str, actors: int, threads: int) -> tuple[RayCluster, int]:
    """The Ray cluster of the run (one clear line if it cannot be reached) and the threads of each actor."""
    from .ray_engine import RayEngineError, connect

    try:
        cluster = connect(address or None, console)
        return cluster, cluster.threads_per_actor(actors, threads)
    except RayEngineError as err:
        raise _bad_input(console, escape(str(err))) from None


def _run(
    console: Console,
    jobs: list[Job],
    init_args: tuple[Any, ...],
    workers: int,
    batch: int,
    cluster: RayCluster | None,
) -> tuple[list[Outcome], str | bool, int]:
    """Encode ``jobs`` on ``cluster``, else locally (in this process for one worker, else in a process
    pool), with progress on ``console``. Returns the outcomes, what interrupted the run (False: nothing)
    and the exit status of that interrupt (0 if none)."""
    outcomes: list[Outcome] = []
    with ProgressReporter(console) as progress, interrupt_on_sigterm():
        tick = progress.step("encoding", len(jobs))

        def record(done: list[Outcome]) -> None:
            outcomes.extend(done)
            for outcome in done:
                if outcome.status == "failed":
                    progress.note(f"failed {outcome.name}: {outcome.message}")
            tick(len(outcomes))

        try:
            if cluster is not None:
                _encode_on_cluster(console, cluster, jobs, init_args, workers, batch, record)
            elif workers == 1:
                encode_here(jobs, init_args, record)
            else:
                encode_in_pool(jobs, workers, batch, init_args, record, progress)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see runtime/signals.py)
            return outcomes, signal_name(stop), exit_status(stop)
        except BrokenProcessPool:
            raise _bad_input(console, "a worker could not start or died (its error is printed above)") from None
    return outcomes, False, 0


def _encode_on_cluster(
    console: Console,
    cluster: RayCluster,
    jobs: list[Job],
    init_args: tuple[Any, ...],
    actors: int,
    batch: int,
    record: Callable[[list[Outcome]], None],
) -> None:
    from .ray_engine import RayEngineError

    try:
        for done in cluster.encode(jobs, *init_args, actors=actors, batch_size=batch):
            record(done)
    except RayEngineError as err:
        raise _bad_input(console, escape(str(err))) from None
    finally:
        cluster.close()


def _print_summary(outcomes: list[Outcome], total: int, seconds: float, interrupted: str | bool) -> None:
    """The summary is the command's result: stdout (progress and live failures: stderr)."""
    report = cli_console()
    report.print(summary_table(outcomes, total, seconds, interrupted))
    for outcome in outcomes:
        if outcome.status == "failed":
            report.print(f"failed: {outcome.name}: {outcome.message}", markup=False, highlight=False)


# ------------------------------------------------------------------------------------------- click


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
    from .decoder import Decoder
    from .session import ClickSession

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
