"""``interformer-encode``: encode images into a feature store, and try clicks on stored features.

Encode a folder once (several processes, resumable), then answer clicks in real time::

    interformer-encode encode photos/ --model export/ --out features/ --workers 2
    interformer-encode click features/cat.jpg.npz --model export/ --at 120,200 --at 40,300,neg --out mask.png

The same from Python (:func:`~.encode_run.encode_folder` is the ``encode`` command)::

    from interformer_edge.runtime import ClickSession, Decoder, EncodeSettings, encode_folder

    encode_folder("photos/", "features/", EncodeSettings("export/"), workers=2)
    session = ClickSession(Decoder("export/", threads=2), "features/cat.jpg.npz")
    mask = session.add_click(120, 200)                  # (H, W) bool, positive click at y=120, x=200
    mask = session.add_click(40, 300, positive=False)

Store layout: ``<out>/<path relative to the input folder>.npz`` (``a/cat.jpg`` → ``a/cat.jpg.npz``),
so names never collide. A store file is reused when its model id, image sha256 and ``max_side``
match; anything else is encoded again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from interformer_edge.core.atomic import atomic_target
from interformer_edge.core.cli_kit import EXIT_FAILURES, EXIT_OK, command_app, fail, warn
from interformer_edge.core.manifest import ManifestError
from interformer_edge.core.progress import ProgressReporter, cli_console
from interformer_edge.core.spec import DEFAULT_MAX_SIDE

from .encode_image import EncodeSettings
from .encode_run import ENGINES, EncodeRunError, encode_folder
from .encode_summary import print_summary
from .errors import InterFormerRuntimeError
from .export import RuntimeSettings, open_export
from .features import STORAGE_DTYPES
from .signals import exit_status

COMMAND = "interformer-encode"

app = command_app(
    no_args_is_help=True,
    help=(
        "Encode images once into a feature store (float16 .npz files, one per image), then segment them "
        "with clicks in real time from the stored features. Torch-free: numpy + ONNX Runtime or OpenVINO."
    ),
)

_DEPRECATED_PRECISION = typer.Option(
    "--precision", hidden=True, show_default=False, help="Deprecated spelling of --compute."
)


def _compute(compute: str, precision: str | None) -> str:
    """``--compute``, or the value of its old spelling ``--precision`` (with a warning line)."""
    if precision is None:
        return compute
    warn(COMMAND, "--precision is deprecated, use --compute")
    return precision


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
    compute: Annotated[
        str,
        typer.Option(
            help="OpenVINO's compute type for the encoder's float layers: f32 (default; exact), bf16, f16, "
            "or device (the CPU's default, bf16 on recent x86)."
        ),
    ] = "f32",
    precision: Annotated[str | None, _DEPRECATED_PRECISION] = None,
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
            "[ray] extra). With ray, SOURCE may also be a list file (.txt) "
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
    compute = _compute(compute, precision)
    if engine not in ENGINES:
        fail(COMMAND, f"--engine must be {' or '.join(ENGINES)}")
    if dtype not in STORAGE_DTYPES:
        fail(COMMAND, f"--dtype must be one of {', '.join(STORAGE_DTYPES)}")
    settings = EncodeSettings(model, RuntimeSettings(backend, threads or None, compute), max_side, dtype, force)
    console = cli_console(stderr=True)
    try:
        with ProgressReporter(console) as progress:
            result = encode_folder(
                source,
                out,
                settings,
                engine=engine,
                workers=workers,
                batch=batch,
                recursive=recursive,
                address=address or None,
                progress=progress,
            )
    except EncodeRunError as err:
        fail(COMMAND, err)
    if not result.total:
        console.print(f"no images found in {source}", markup=False, highlight=False)
        raise typer.Exit(EXIT_OK)
    print_summary(result, cli_console())  # the command's result: stdout (progress and live failures: stderr)
    if result.interrupted:
        raise typer.Exit(exit_status(result.interrupted))
    if result.failed:
        raise typer.Exit(EXIT_FAILURES)


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
    compute: Annotated[
        str, typer.Option(help="OpenVINO's compute type for the decoder's float layers: f32, bf16, f16 or device.")
    ] = "f32",
    precision: Annotated[str | None, _DEPRECATED_PRECISION] = None,
    zoom_in: Annotated[
        bool | None,
        typer.Option(
            "--zoom-in/--no-zoom-in", help="Zoom-in from the second click (default: when the model has refine stages)."
        ),
    ] = None,
) -> None:
    """Replay clicks on stored features and save the mask; prints the time of each click."""
    from .session import ClickSession

    compute = _compute(compute, precision)
    console = cli_console()
    clicks = [_parse_click(text) for text in at]
    try:
        decoder = open_export(model).decoder(RuntimeSettings(backend, threads or None, compute))
        session = ClickSession(decoder, features, zoom_in=zoom_in)
        for y, x, positive in clicks:
            started = time.perf_counter()
            mask = session.add_click(y, x, positive)
            console.print(
                f"click ({y}, {x}, {'pos' if positive else 'neg'}): {mask.mean():.1%} of the image, "
                f"{(time.perf_counter() - started) * 1000:.1f} ms"
            )
    except (ManifestError, InterFormerRuntimeError) as err:
        fail(COMMAND, err)
    try:  # all or nothing, and a missing or unwritable folder is one line, not a traceback
        with atomic_target(out) as tmp:
            Image.fromarray(np.where(session.mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    except OSError as err:
        fail(COMMAND, f"cannot write {out}: {err.strerror or err}")
    console.print(f"wrote {out} ({session.width}x{session.height}, {decoder.backend})")


if __name__ == "__main__":  # python -m interformer_edge.runtime.cli
    app()
