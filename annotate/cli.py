"""``interformer-annotate``: serve a folder of images to annotators in the browser, and to CVAT / Label Studio.

interformer-annotate photos/ -m export/ --out masks/
# open http://127.0.0.1:8000/ ; CVAT: POST /cvat/interactor ; Label Studio ML backend: http://HOST:8000
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from interformer_edge.core.cli_kit import command_app, fail, warn
from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.manifest import ManifestError
from interformer_edge.core.messages import first_line
from interformer_edge.core.spec import DEFAULT_MAX_SIDE
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.errors import InterFormerRuntimeError
from interformer_edge.runtime.export import Export, RuntimeSettings, open_export
from interformer_edge.runtime.features import FEATURE_SUFFIX, ImageFeatures

from .browser_decode import DECODE_MODES, PAGE_VARIANTS
from .decoder_choice import AUTO, DecoderChoice, choose_decoder, timing_image
from .errors import RequestError
from .guard import TOKEN_QUERY, AccessPolicy, is_loopback, served_hosts
from .images import ImageFolder, folder_canvases

if TYPE_CHECKING:
    from .browser_decode import BrowserSide

COMMAND = "interformer-annotate"
TOKEN_ENV = "INTERFORMER_ANNOTATE_TOKEN"
TIMING_SIZE = (512, 512)  # the image the decoder candidates are timed on (the benchmark's size)

app = command_app()


def _check_source(images: Path) -> None:
    if not images.exists():
        fail(COMMAND, f"{images} does not exist")
    if images.is_file():
        if images.suffix.lower() not in IMAGE_SUFFIXES:
            fail(COMMAND, f"{images} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        return
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.rglob("*")):
        if any(images.rglob("*" + FEATURE_SUFFIX)):
            fail(
                COMMAND,
                f"{images} is a feature store without the images: pass the image folder and --features {images}",
            )
        fail(COMMAND, f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        fail(COMMAND, f"cannot write the masks to {out} ({err.strerror or err}): choose another --out")


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
            help="Address to listen on. The default 127.0.0.1 serves this machine only, without a token; "
            "any other address (0.0.0.0: every interface) requires the access token on every request."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            help="Access token every request must carry (the page gets it from the printed link "
            "…/?token=…). Default: none on loopback; a new random one, printed, when serving a network. "
            f"Prefer the {TOKEN_ENV} environment variable: a flag shows in the process list.",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another host name the server answers to (repeatable), e.g. a reverse proxy's public name; "
            "'*' for any. Requests naming any other host are refused (DNS rebinding).",
            show_default=False,
        ),
    ] = None,
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
    variant: Annotated[
        str,
        typer.Option(
            help="Click decoder file: fp32 (the export), int8 (written by interformer-quantize), or auto: "
            "the fastest here among those that passed their accuracy gate (timed at start)."
        ),
    ] = AUTO,
    precision: Annotated[
        str | None, typer.Option(hidden=True, help="Deprecated spelling of --variant.", show_default=False)
    ] = None,
    backend: Annotated[
        str,
        typer.Option(help="onnxruntime, openvino, or auto: the fastest installed one (timed at start)."),
    ] = AUTO,
    compute: Annotated[
        str,
        typer.Option(
            help="OpenVINO's compute type for the decoder's float layers: f32, bf16, f16, device, or auto: "
            "the device's own (bf16 on AVX512-BF16/AMX) where the int8 decoder's gate passed with it, and f32."
        ),
    ] = AUTO,
    static_shapes: Annotated[
        bool | None,
        typer.Option(
            "--static-shapes/--dynamic-shapes",
            help="Compile the decoder for each image size (once per size, when an image is first opened): "
            "faster clicks, the same masks. Default: static when the folder's images need at most "
            "--static-sizes canvas sizes (more would compile again and again), else dynamic.",
            show_default=False,
        ),
    ] = None,
    static_sizes: Annotated[
        int,
        typer.Option(
            "--static-sizes",
            min=1,
            help="Image sizes the static-shape decoder keeps compiled (each takes 75-200 MB at 512-1024 px).",
        ),
    ] = 4,
    decode: Annotated[
        str,
        typer.Option(
            help="Where clicks are answered: browser (the page runs the click decoder with onnxruntime-web; the "
            "server only encodes each image once) or server (every click is a request). A page may ask for the "
            "other with ?decode=server or ?decode=browser; without WebAssembly it falls back to the server.",
        ),
    ] = "browser",
    page_variant: Annotated[
        str,
        typer.Option(
            "--page-variant",
            help="Click decoder file the pages run: fp32 (the export), int8, or auto: int8 where it passed its gate "
            "in a browser (interformer-quantize --browser) with this onnxruntime-web and was the faster there, "
            "else fp32.",
        ),
    ] = "auto",
    coco_segmentation: Annotated[
        str,
        typer.Option(
            "--coco-segmentation",
            help="How annotations.json writes each mask: rle (compact) or polygon (one polygon per part, holes "
            "joined in; exact). The PNG masks are written either way.",
        ),
    ] = "rle",
    check_saves: Annotated[
        bool,
        typer.Option(
            "--check-saves/--no-check-saves",
            help="Replay the clicks of each object decoded in a browser when it is saved, and refuse a mask that "
            "disagrees with the server's decoder (IoU below 0.9; 0.8 when either decoder is INT8).",
        ),
    ] = True,
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
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            min=0,
            help="Largest image (width x height) a tool may send; 0: what 4 requests at once fit in the "
            "memory free at start, at most 64 million.",
        ),
    ] = 0,
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
            help="Label Studio's address, to fetch task images it hosts (uploads, local files) that are not in "
            "IMAGES. Nothing is fetched from anywhere else (Label Studio's /setup cannot change it).",
        ),
    ] = None,
    label_studio_token: Annotated[
        str | None,
        typer.Option(
            envvar="LABEL_STUDIO_API_KEY",
            help="Label Studio key for those downloads: a Personal Access Token (Account & Settings; exchanged for "
            "short-lived access tokens) or a legacy token.",
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
        fail(
            COMMAND,
            f"the serve extra is missing ({err.name} is not installed): pip install 'interformer-edge[serve]'",
        )
    from .service import Annotator, Settings

    _check_source(images)
    out = out if out is not None else (images if images.is_dir() else images.parent) / "annotations"
    if features is not None and not features.is_dir():
        fail(COMMAND, f"--features {features} is not a folder")
    if features is None and images.is_dir() and any(images.glob("*" + FEATURE_SUFFIX)):
        features = images  # encoded in place (interformer-encode encode IMAGES --out IMAGES)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if precision is not None:
        warn(COMMAND, "--precision is deprecated, use --variant (same values)")
        variant = precision
    if token is not None and not token.strip():
        fail(COMMAND, f"--token ({TOKEN_ENV}) is empty")
    # before the decoders are loaded and timed (seconds)
    for flag, value, allowed in (("--decode", decode, DECODE_MODES), ("--page-variant", page_variant, PAGE_VARIANTS)):
        if value.lower() not in allowed:
            fail(COMMAND, f"{flag} must be one of {', '.join(allowed)}, not {value!r}")
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)  # serving a network: never without a token
    policy = AccessPolicy(served_hosts(host, allowed_host or ()), token)
    try:
        export = open_export(model)
        if static_shapes is None:
            canvases = folder_canvases(ImageFolder(images, recursive, exclude=out), export.manifest, max_side or None)
            static_shapes = len(canvases) <= static_sizes
            if not static_shapes:
                print(
                    f"interformer-annotate: dynamic shapes: the images need {len(canvases)} canvas sizes, more than "
                    f"--static-sizes {static_sizes}",
                    file=sys.stderr,
                )
        choice, decoder, timings = _choose_decoder(
            export, DecoderChoice(backend, variant, compute, static_shapes, static_sizes), threads or None
        )
        settings = Settings(
            images=images,
            model=model,
            out=out,
            features=features,
            threads=threads or None,
            backend=choice.backend,
            variant=choice.variant,
            compute=choice.compute,
            static_shapes=choice.static_shapes,
            static_sizes=choice.static_sizes,
            max_side=max_side,
            recursive=recursive,
            cache_mb=cache_mb,
            prefetch=prefetch,
            idle_minutes=idle_minutes,
            max_sessions=max_sessions,
            max_upload_mb=max_upload_mb,
            max_pixels=max_pixels or None,
            label_studio_url=label_studio_url,
            label_studio_token=label_studio_token,
            decode=decode.lower(),
            page_variant=page_variant.lower(),
            check_saves=check_saves,
            coco_segmentation=coco_segmentation,
        )
        annotator = Annotator(settings, decoder, export)
    except (ManifestError, InterFormerRuntimeError, RequestError, ValueError) as err:
        fail(COMMAND, first_line(err))
    _check_writable(out)
    print(
        f"interformer-annotate: {len(annotator.folder)} images, model {annotator.model_id} → saving to {out}\n"
        f"decoder: {_decoder_line(choice, timings)}; clicks answered in the {_mode_line(annotator.browser)}\n"
        f"tool images up to {annotator.max_pixels / 1e6:.1f} MP; open {_page_url(host, port, token)}",
        file=sys.stderr,
    )
    if token is not None:
        print(
            "every request needs the token: the link above sets it in the browser; tools send "
            "'Authorization: Token <token>' (see docs/annotate.md)",
            file=sys.stderr,
        )
    uvicorn.run(build_app(annotator, click_workers, policy), host=host, port=port, log_level="warning")


def _choose_decoder(
    export: Export, asked: DecoderChoice, threads: int | None
) -> tuple[DecoderChoice, Decoder, dict[DecoderChoice, float]]:
    """The decoder to serve (timed among the gated candidates when a field is ``auto``)."""

    def features() -> ImageFeatures:
        print("interformer-annotate: timing the gated click decoders to pick the fastest…", file=sys.stderr)
        return export.encoder(RuntimeSettings(threads=threads)).encode(timing_image(TIMING_SIZE), name="timing")

    return choose_decoder(export, asked, threads, features)


def _mode_line(browser: BrowserSide) -> str:
    if browser.file is None:
        return browser.mode
    return f"{browser.mode} (pages run the {browser.file.variant} decoder: {browser.variant_reason})"


def _decoder_line(choice: DecoderChoice, timings: dict[DecoderChoice, float]) -> str:
    if not timings:
        return choice.describe()
    others = ", ".join(f"{c.describe()} {ms:.1f} ms" for c, ms in sorted(timings.items(), key=lambda kv: kv[1]))
    return (
        f"{choice.describe()}, {timings[choice]:.1f} ms per click at {TIMING_SIZE[1]}x{TIMING_SIZE[0]}: the fastest "
        f"of {len(timings)} that passed their accuracy gate ({others})"
    )


def _page_url(host: str, port: int, token: str | None) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?{TOKEN_QUERY}={token}" if token else "")


if __name__ == "__main__":  # python -m interformer_edge.annotate.cli
    app()
