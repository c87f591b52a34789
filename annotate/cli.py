"""``interformer-annotate``: serve a folder of images to annotators in the browser, and to CVAT / Label Studio.

interformer-annotate photos/ -m export/ --out masks/
# open http://127.0.0.1:8000/ ; CVAT: POST /cvat/interactor ; Label Studio ML backend: http://HOST:8000
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.manifest import BASE_PRECISION, ManifestError
from interformer_edge.core.messages import first_line
from interformer_edge.core.spec import DEFAULT_MAX_SIDE
from interformer_edge.runtime.errors import InterFormerRuntimeError
from interformer_edge.runtime.features import FEATURE_SUFFIX

from .errors import RequestError

EXIT_BAD_INPUT = 2
LOOPBACK = ("127.0.0.1", "localhost", "::1")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_BAD_INPUT)


def _check_source(images: Path) -> None:
    if not images.exists():
        _fail(f"{images} does not exist")
    if images.is_file():
        if images.suffix.lower() not in IMAGE_SUFFIXES:
            _fail(f"{images} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        return
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.rglob("*")):
        if any(images.rglob("*" + FEATURE_SUFFIX)):
            _fail(f"{images} is a feature store without the images: pass the image folder and --features {images}")
        _fail(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        _fail(f"cannot write the masks to {out} ({err.strerror or err}): choose another --out")


@app.command()
def main(
    images: Annotated[
        Path,
        typer.Argument(
            help="A folder of images (jpg, png, bmp, tif, webp) or one image. Images already encoded by "
            "interformer-encode are read from --features."
        ),
    ],
    model: Annotated[Path, typer.Option("--model", "-m", help="Export folder (with manifest.json) of the model.")],
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. The default 127.0.0.1 serves this machine only; 0.0.0.0 serves the whole "
            "network with no authentication: an explicit choice, for a trusted network only."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where masks are saved: annotations.json (COCO, RLE) and masks/<image>/<k>_<label>.png. "
            "Reopening the same folder shows what was saved. Default: <IMAGES>/annotations.",
        ),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            "-f",
            help="Feature store written by `interformer-encode encode IMAGES --out STORE`: "
            "images found there open without encoding; images encoded here are added to "
            "it.",
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", "-t", min=0, help="CPU threads of the encoder and of the decoder; 0: all cores.")
    ] = 0,
    precision: Annotated[
        str,
        typer.Option(
            help="Click decoder: fp32 (the export) or int8 (written into the export by interformer-quantize)."
        ),
    ] = BASE_PRECISION,
    backend: Annotated[
        str, typer.Option(help="auto (ONNX Runtime if available, else OpenVINO), onnxruntime or openvino.")
    ] = "auto",
    max_side: Annotated[
        int,
        typer.Option(
            "--max-side",
            min=0,
            help="Encode photos whose longer side exceeds this at that size (encoder memory grows "
            "with the fourth power of the side; masks still come back at the photo's "
            "size); 0: full size (up to the model's limit).",
        ),
    ] = DEFAULT_MAX_SIDE,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", "-r", help="Also serve images in sub-folders.")
    ] = False,
    cache_mb: Annotated[
        int,
        typer.Option(
            "--cache-mb",
            min=16,
            help="Memory for encoded images (least recently used dropped first). "
            "A 1024-pixel photo takes ~16 MB, a 512-pixel one ~4 MB.",
        ),
    ] = 512,
    prefetch: Annotated[int, typer.Option(min=0, help="Images after the open one encoded in the background.")] = 7,
    idle_minutes: Annotated[
        float,
        typer.Option(
            "--idle-minutes", min=0.1, help="A click session (one object in one tab) untouched this long is closed."
        ),
    ] = 30.0,
    max_sessions: Annotated[
        int,
        typer.Option(
            "--max-sessions",
            min=1,
            help="Open click sessions at most (the least recently used is closed first); "
            "each holds ~13 MB at 1024x768, ~4.4 MB at 512x512.",
        ),
    ] = 64,
    max_upload_mb: Annotated[
        int,
        typer.Option("--max-upload-mb", min=1, help="Largest image accepted from CVAT or fetched from Label Studio."),
    ] = 32,
    click_workers: Annotated[
        int,
        typer.Option(
            "--click-workers",
            min=1,
            help="Decoder runs at the same time (clicks of all annotators queue for them); 1 suits a small CPU.",
        ),
    ] = 1,
    label_studio_url: Annotated[
        str | None,
        typer.Option(
            envvar="LABEL_STUDIO_URL",
            help="Label Studio's address, to fetch task images it hosts (uploads, local files) that are not in IMAGES.",
        ),
    ] = None,
    label_studio_token: Annotated[
        str | None,
        typer.Option(
            envvar="LABEL_STUDIO_API_KEY",
            help="Label Studio API token for those downloads (Account & Settings → Access Token).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a web annotator (click to segment, save masks) and CVAT / Label Studio endpoints.

    In the page: left click adds a positive point, right click (or shift+click) a negative one; keys:
    n new object, z undo, r reset, s save, ←/→ previous/next image. Exit status: 2 bad arguments or model.
    """
    try:
        import uvicorn

        from .server import build_app
    except ModuleNotFoundError as err:
        _fail(
            f"interformer-annotate needs the serve extra ({err.name} is missing): pip install 'interformer-edge[serve]'"
        )
    from .service import Annotator, Settings

    _check_source(images)
    out = out if out is not None else (images if images.is_dir() else images.parent) / "annotations"
    if features is not None and not features.is_dir():
        _fail(f"--features {features} is not a folder")
    if features is None and images.is_dir() and any(images.glob("*" + FEATURE_SUFFIX)):
        features = images  # encoded in place (interformer-encode encode IMAGES --out IMAGES)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    settings = Settings(
        images=images,
        model=model,
        out=out,
        features=features,
        threads=threads or None,
        precision=precision,
        backend=backend,
        max_side=max_side,
        recursive=recursive,
        cache_mb=cache_mb,
        prefetch=prefetch,
        idle_minutes=idle_minutes,
        max_sessions=max_sessions,
        max_upload_mb=max_upload_mb,
        label_studio_url=label_studio_url,
        label_studio_token=label_studio_token,
    )
    try:
        annotator = Annotator(settings)
    except (ManifestError, InterFormerRuntimeError, RequestError, ValueError) as err:
        _fail(first_line(err))
    _check_writable(out)
    if host not in LOOPBACK:
        print(
            f"warning: listening on {host}: anyone who can reach this machine can read the images and save masks",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(
        f"interformer-annotate: {len(annotator.folder)} images, model {annotator.model_id} ({precision}, "
        f"{annotator.decoder.backend}) → saving to {out}\nopen http://{shown}:{port}/",
        file=sys.stderr,
    )
    uvicorn.run(build_app(annotator, click_workers), host=host, port=port, log_level="warning")


if __name__ == "__main__":  # python -m interformer_edge.annotate.cli
    app()
