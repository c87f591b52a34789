"""The ASGI app: the page, its JSON API, and the CVAT and Label Studio endpoints on one server.

Routes (JSON in and out; a refusal is a 4xx ``{"error": "<one line>"}``)::

    GET  /                         the annotator page (one self-contained HTML file)
    GET  /api/images               image list with status (done / untouched) and the model
    GET  /files/<name>             an image file as served to the page and to tools
    POST /api/open                 {image} -> size, encode time, saved objects, revision; pre-encodes the next images
    POST /api/sessions             {image, label} -> {session}: one object of one tab
    POST /api/sessions/<id>/click  {x, y, positive} -> {mask: 1-bit PNG base64, decode_ms, clicks, area}
    POST /api/sessions/<id>/undo   (and /reset) -> the same
    DELETE /api/sessions/<id>
    POST /api/save                 {image, revision, objects: [{session, label} | {saved, label}]} -> new revision;
                                   409 (code stale_revision) when the image was saved since that revision
    POST /cvat/interactor          CVAT interactor contract (see :mod:`.tools`)
    GET  /health, POST /setup, POST /predict   Label Studio ML backend
    POST /webhook                  Label Studio's events (ANNOTATION_CREATED after Submit): acknowledged
    GET  /v1/models, POST /v1/predict   X-AnyLabeling's remote server: the mask as polygons (:mod:`.xanylabeling`)
    GET  /api/model                the decoder and click settings for a page that decodes clicks itself
    GET  /api/features/<name>      the image's decoder inputs, one binary payload (:mod:`.browser_decode`)
    GET  /model/<sha>/decoder.onnx, /static/ort/<version>/<file>   the decoder and onnxruntime-web

Every route but the page shell ``/`` passes :class:`~.guard.AccessPolicy` first (Host, token,
same-origin writes). ``/cvat/interactor`` and ``/predict`` stop their work when the client leaves.

Model work runs in a small thread pool (``click_workers``, default 1: on a small CPU, decoder runs
that overlap only slow each other down); encoding waits run in Starlette's own pool so a click is
never queued behind an image being encoded.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from interformer_edge.core.image_io import ImageReadError, read_rgb
from interformer_edge.core.messages import first_line

from .browser_decode import MEDIA_TYPES, MODEL_ROUTE, ORT_WEB_ROUTE, PAGE_MODULE_FOLDER, PAGE_MODULE_ROUTE
from .errors import ClientGoneError, NotFoundError, RequestError, TooLargeError
from .guard import TOKEN_COOKIE, TOKEN_QUERY, AccessPolicy, UnauthorizedError
from .limits import JSON_LIMIT_BYTES
from .service import Annotator, check_runtime_error

log = logging.getLogger("interformer_edge.annotate")

DISCONNECT_POLL_SECONDS = 0.1  # how often long tool requests look whether their client is still there
# On every answer: no MIME sniffing, no Referer (the access link carries the token), never in a frame
# of another site (a hidden frame would let that site steer an annotator's clicks).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
    # Cross-origin isolation: the page's decoder may use threads (SharedArrayBuffer), and no other site can
    # embed what this server hands out.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"  # URLs that carry a version or a content hash


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {"error": message} if code is None else {"error": message, "code": code}
    return JSONResponse(body, status_code=status)


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the request has {declared} bytes, more than the {limit >> 20} MB limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLargeError(f"the request is larger than the {limit >> 20} MB limit")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"the body is not valid JSON ({err})") from None
    except RecursionError:
        raise RequestError("the body's JSON is nested too deeply") from None


async def _until_disconnect(request: Request, work: Callable[[threading.Event], Any]) -> Any:
    """``work(cancel)`` in a worker thread; if the client disconnects first, ``cancel`` is set (the work
    stops at its next check) and :class:`ClientGoneError` is raised."""
    cancel = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(None, work, cancel)
    while True:
        done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return future.result()
        if await request.is_disconnected():
            cancel.set()
            log.info("%s %s: the client left, its work is cancelled", request.method, request.url.path)
            raise ClientGoneError("the client disconnected")


def build_app(annotator: Annotator, click_workers: int = 1, policy: AccessPolicy | None = None) -> Starlette:
    """The Starlette app around ``annotator`` (which it closes on shutdown).

    ``policy``: who may use it (default: this machine's loopback names, no token).
    """
    policy = policy if policy is not None else AccessPolicy()
    pool = ThreadPoolExecutor(max_workers=click_workers, thread_name_prefix="annotate-click")
    page = files("interformer_edge.annotate").joinpath("static/index.html").read_text(encoding="utf-8")
    page_modules = Path(str(files("interformer_edge.annotate").joinpath(PAGE_MODULE_FOLDER)))
    upload_limit = annotator.max_upload_bytes * 4 // 3 + JSON_LIMIT_BYTES  # base64 of the largest image

    async def on_model(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def endpoint(handler: Callable[[Request], Any], public: bool = False) -> Callable[[Request], Any]:
        async def wrapped(request: Request) -> Response:
            response = await answer(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        async def answer(request: Request) -> Response:
            try:
                host = policy.check_host(request.headers)
                if not public:
                    policy.check_token(request.headers, request.cookies)
                policy.check_write(request.method, request.headers, host)
                result = await handler(request)
            except RequestError as err:
                if err.status >= 500 or isinstance(err, ClientGoneError):
                    log.warning("%s %s: %s", request.method, request.url.path, err)
                return _error(err.status, str(err), err.code)
            except Exception as err:  # a runtime refusal is the client's; anything else is logged, one line out
                mapped = check_runtime_error(err)
                if mapped is not None:
                    return _error(mapped.status, str(mapped))
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(500, f"internal error: {first_line(err, with_type=True)}")
            return result if isinstance(result, Response) else JSONResponse(result)

        return wrapped

    async def index(request: Request) -> Response:
        offered = request.query_params.get(TOKEN_QUERY)
        if offered is not None:  # the access link: keep the token in a cookie, take it out of the address bar
            kept = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_QUERY])
            response = RedirectResponse("/" + (f"?{kept}" if kept else ""), status_code=303)
            if policy.token is None:  # this server needs no token: nothing to keep
                return response
            if not policy.token_matches(offered):
                raise UnauthorizedError("the access link's token is wrong: open the link interformer-annotate printed")
            response.set_cookie(
                TOKEN_COOKIE,
                offered,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                max_age=30 * 24 * 3600,
            )
            return response
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def images(request: Request) -> Any:
        return annotator.listing()

    async def image_file(request: Request) -> Response:
        name = annotator.folder.require(request.path_params["name"])
        media = annotator.folder.media_type(name)
        path = annotator.folder.path(name)
        if media is not None:
            return Response(await run_in_threadpool(path.read_bytes), media_type=media)

        def as_png() -> bytes:
            buffer = io.BytesIO()
            try:
                Image.fromarray(read_rgb(path)).save(buffer, format="PNG")
            except ImageReadError as err:
                raise RequestError(str(err), status=422) from None
            return buffer.getvalue()

        return Response(await run_in_threadpool(as_png), media_type="image/png")

    async def open_image(request: Request) -> Any:
        body = await _read_json(request, JSON_LIMIT_BYTES)
        name = body.get("image") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise RequestError('the body must be {"image": <name>}')
        return await run_in_threadpool(annotator.open_image, name)

    async def new_session(request: Request) -> Any:
        body = await _read_json(request, JSON_LIMIT_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            raise RequestError('the body must be {"image": <name>, "label": <label>}')
        return await run_in_threadpool(annotator.new_session, body["image"], body.get("label", "object"))

    async def click(request: Request) -> Any:
        body = await _read_json(request, JSON_LIMIT_BYTES)
        if not isinstance(body, dict):
            raise RequestError('the body must be {"x": int, "y": int, "positive": bool}')
        return await on_model(
            annotator.click, request.path_params["sid"], body.get("x"), body.get("y"), body.get("positive", True)
        )

    async def undo(request: Request) -> Any:
        return await on_model(annotator.undo, request.path_params["sid"])

    async def reset(request: Request) -> Any:
        return await on_model(annotator.reset, request.path_params["sid"])

    async def close_session(request: Request) -> Any:
        return annotator.close_session(request.path_params["sid"])

    async def save(request: Request) -> Any:
        body = await _read_json(request, JSON_LIMIT_BYTES)
        if not isinstance(body, dict):
            raise RequestError('the body must be {"image": <name>, "objects": [...], "revision": <from /api/open>}')
        return await run_in_threadpool(annotator.save, body.get("image"), body.get("objects"), body.get("revision"))

    async def cvat(request: Request) -> Any:
        body = await _read_json(request, upload_limit)
        return await _until_disconnect(request, lambda cancel: annotator.cvat(body, cancel))

    async def health(request: Request) -> Any:
        return annotator.health()

    async def setup(request: Request) -> Any:
        return annotator.setup(await _read_json(request, JSON_LIMIT_BYTES))

    async def predict(request: Request) -> Any:
        body = await _read_json(request, upload_limit)  # a task may carry its image inline (data URI)
        return await _until_disconnect(request, lambda cancel: annotator.predict(body, cancel))

    async def webhook(request: Request) -> Any:
        # Label Studio's events (ANNOTATION_CREATED after each Submit: the whole annotation, brush RLE included)
        return annotator.label_studio.webhook(await _read_json(request, upload_limit))

    async def xanylabeling_models(request: Request) -> Any:
        return annotator.xanylabeling.models()

    async def xanylabeling_predict(request: Request) -> Any:
        body = await _read_json(request, upload_limit)  # the whole image, base64, with every click
        return await _until_disconnect(request, lambda cancel: annotator.xanylabeling.predict(body, cancel))

    async def model(request: Request) -> Any:
        return annotator.browser.info()

    async def features(request: Request) -> Response:
        name = request.path_params["name"]
        known = annotator.payload_etag(name)  # no encoding for a revalidation of a cached image
        if known is not None and request.headers.get("if-none-match") == known:
            return Response(status_code=304, headers={"ETag": known, "Cache-Control": "private, no-cache"})
        etag, payload = await run_in_threadpool(annotator.feature_payload, name)
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        return Response(payload, media_type="application/octet-stream", headers=headers)

    async def decoder_file(request: Request) -> Response:
        file = annotator.browser.file
        if file is None or request.path_params["digest"] != file.digest:
            raise NotFoundError(f"no decoder {request.path_params['digest']!r} here")
        return FileResponse(file.path, media_type=MEDIA_TYPES[".onnx"], headers={"Cache-Control": IMMUTABLE})

    async def ort_file(request: Request) -> Response:
        ort_web, name = annotator.browser.ort_web, request.path_params["file"]
        if ort_web is None or request.path_params["version"] != ort_web.version or name not in ort_web.files:
            raise NotFoundError(f"no {name!r} of onnxruntime-web {request.path_params['version']!r} here")
        media = MEDIA_TYPES[Path(name).suffix]
        return FileResponse(ort_web.files[name], media_type=media, headers={"Cache-Control": IMMUTABLE})

    async def page_module(request: Request) -> Response:
        name = request.path_params["file"]
        if Path(name).name != name or Path(name).suffix != ".mjs" or not (page_modules / name).is_file():
            raise NotFoundError(f"no page module {name!r}")
        # no-cache: revalidated on every load, so a new version of the package is never run with old modules
        return FileResponse(page_modules / name, media_type=MEDIA_TYPES[".mjs"], headers={"Cache-Control": "no-cache"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no route {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    routes = [
        Route("/", endpoint(index, public=True)),
        Route("/api/images", endpoint(images)),
        Route("/files/{name:path}", endpoint(image_file)),
        Route("/api/open", endpoint(open_image), methods=["POST"]),
        Route("/api/sessions", endpoint(new_session), methods=["POST"]),
        Route("/api/sessions/{sid}/click", endpoint(click), methods=["POST"]),
        Route("/api/sessions/{sid}/undo", endpoint(undo), methods=["POST"]),
        Route("/api/sessions/{sid}/reset", endpoint(reset), methods=["POST"]),
        Route("/api/sessions/{sid}", endpoint(close_session), methods=["DELETE"]),
        Route("/api/save", endpoint(save), methods=["POST"]),
        Route("/api/model", endpoint(model)),
        Route("/api/features/{name:path}", endpoint(features)),
        Route(MODEL_ROUTE + "/{digest}/decoder.onnx", endpoint(decoder_file)),
        Route(ORT_WEB_ROUTE + "/{version}/{file}", endpoint(ort_file)),
        Route(PAGE_MODULE_ROUTE + "/{file}", endpoint(page_module)),
        Route("/cvat/interactor", endpoint(cvat), methods=["POST"]),
        Route("/health", endpoint(health)),
        Route("/setup", endpoint(setup), methods=["POST"]),
        Route("/predict", endpoint(predict), methods=["POST"]),
        Route("/webhook", endpoint(webhook), methods=["POST"]),
        Route("/v1/models", endpoint(xanylabeling_models)),
        Route("/v1/predict", endpoint(xanylabeling_predict), methods=["POST"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        annotator.close()

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, lifespan=lifespan)
