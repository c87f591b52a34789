"""What the server does, without HTTP: images, features, click sessions, saving and the tool endpoints.

Every method is blocking and thread-safe; the web layer (:mod:`.server`) runs them in worker threads.
Results are plain JSON-ready dicts; refusals raise :class:`~.errors.RequestError` (a 4xx).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from interformer_edge.core.image_io import ImageReadError
from interformer_edge.core.manifest import BASE_PRECISION
from interformer_edge.core.messages import first_line
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.errors import ClickError, FeatureFileError, InterFormerRuntimeError, ModelMismatchError
from interformer_edge.runtime.export import Export, RuntimeSettings, open_export
from interformer_edge.runtime.features import FEATURE_SUFFIX, ImageFeatures, load_features, save_features
from interformer_edge.runtime.session import ClickSession

from .browser_decode import BrowserSide
from .decoder_choice import DecoderChoice
from .errors import ConflictError, RequestError
from .feature_cache import CachedFeatures, FeatureCache
from .images import ImageFolder
from .interactor import CvatInteractor
from .label_studio import LabelStudioBackend, LabelStudioClient
from .limits import MAX_CLICKS_PER_OBJECT, default_max_pixels
from .saving import AnnotationStore, ObjectMask, check_label, stale_revision_error
from .sessions import ReplaySessions, SessionRegistry, session_bytes
from .xanylabeling import XAnyLabelingServer

log = logging.getLogger("interformer_edge.annotate")

MODEL_NAME = "interformer-edge"


@dataclass(frozen=True)
class Settings:
    """Everything ``interformer-annotate`` is started with (see its ``--help``)."""

    images: Path
    model: Path
    out: Path
    features: Path | None = None  # a store written by interformer-encode (read, and filled with new encodings)
    threads: int | None = None
    backend: str = "auto"  # of the encoder and the decoder: auto (ONNX Runtime if installed), onnxruntime, openvino
    variant: str = BASE_PRECISION  # the decoder file: fp32 or int8
    compute: str = "f32"  # OpenVINO's compute type for the decoder's float layers: f32, bf16, f16, device
    static_shapes: bool = False  # compile the decoder per image size (faster clicks, the same masks)
    static_sizes: int = 2  # image sizes a static-shape decoder keeps compiled
    max_side: int | None = None  # None: the runtime's default bound (spec.DEFAULT_MAX_SIDE); 0: full size
    recursive: bool = False
    cache_mb: int = 512
    prefetch: int = 7
    idle_minutes: float = 30.0
    max_sessions: int = 64
    max_upload_mb: int = 32
    max_pixels: int | None = None  # largest image a tool may send; None: :func:`~.limits.default_max_pixels`
    label_studio_url: str | None = None
    label_studio_token: str | None = None
    decode: str = "browser"  # where clicks are answered by default: "browser" (the page's own decoder) or "server"
    page_variant: str = "auto"  # the decoder file pages run: "fp32", "int8" or "auto" (browser_decode.page_variant)
    check_saves: bool = True  # replay a browser-decoded object's clicks on save and refuse a mask that disagrees
    coco_segmentation: str = "rle"  # how annotations.json writes masks: "rle" or "polygon"

    def decoder_choice(self) -> DecoderChoice:
        return DecoderChoice(self.backend, self.variant, self.compute, self.static_shapes, self.static_sizes)


def png_base64(mask: np.ndarray) -> str:
    """A mask for the page: 1-bit PNG, base64 (a few KB where raw bits would be ``H W / 8`` bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Annotator:
    """The model, the served folder and the state shared by every annotator.

    Raises:
        ManifestError, InterFormerRuntimeError, RequestError: the model, options or output folder are unusable.
    """

    def __init__(self, settings: Settings, decoder: Decoder | None = None, export: Export | None = None) -> None:
        """``decoder``: one already loaded (e.g. chosen by timing), else built from ``settings``; ``export``:
        ``settings.model`` already opened."""
        self.settings = settings
        export = export if export is not None else open_export(settings.model)
        self.encoder = export.encoder(RuntimeSettings(settings.backend, settings.threads), settings.max_side)
        self.decoder = decoder or settings.decoder_choice().load(export, settings.threads)
        self.model_id = self.encoder.model_id
        self.model_version = f"{MODEL_NAME}-{self.model_id}-{settings.variant}"
        self.folder = ImageFolder(settings.images, settings.recursive, exclude=settings.out)
        self.store = AnnotationStore(settings.out, settings.coco_segmentation)
        self.cache = FeatureCache(settings.cache_mb << 20, settings.prefetch)
        self.sessions = SessionRegistry(self.decoder, settings.idle_minutes * 60.0, settings.max_sessions)
        self.replays = ReplaySessions(self.decoder)
        self.max_upload_bytes = settings.max_upload_mb << 20
        self.max_pixels = settings.max_pixels if settings.max_pixels is not None else default_max_pixels()
        self.interactor = CvatInteractor(self.encoder, self.cache, self.replays, self.max_upload_bytes, self.max_pixels)
        self.label_studio = LabelStudioBackend(
            LabelStudioClient(settings.label_studio_url, settings.label_studio_token, self.max_upload_bytes),
            self.folder,
            self.folder_features,
            self._bytes_features,
            self.replays,
            self.model_version,
        )
        self.xanylabeling = XAnyLabelingServer(self.interactor, self.model_version)

        self.browser = BrowserSide(
            export.manifest, self.decoder, self.model_id, settings.decode, settings.check_saves, settings.page_variant
        )

    def close(self) -> None:
        self.cache.close()

    # --------------------------------------------------------------------------------- features

    def _store_path(self, name: str) -> Path | None:
        if self.settings.features is None:
            return None
        return self.settings.features / (name + FEATURE_SUFFIX)

    def _load_folder_image(self, name: str) -> tuple[ImageFeatures, str]:
        """Features of a served image: from the feature store when it holds this image's, else encoded."""
        path = self.folder.path(name)
        stored = self._store_path(name)
        if stored is not None and stored.is_file():
            try:
                features = load_features(stored, expected_model_id=self.model_id)
            except ModelMismatchError as err:
                raise ConflictError(f"{stored}: {first_line(err)}") from None
            except FeatureFileError as err:
                log.warning("%s is unusable (%s): encoding %s again", stored, first_line(err), name)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if features.meta.image_sha256 in (None, digest):
                    return features, "store"
                log.info("%s was encoded from another version of %s: encoding it again", stored, name)
        try:
            features = self.encoder.encode(path, name=name)
        except ImageReadError as err:
            raise RequestError(first_line(err), status=422) from None
        if stored is not None:
            try:
                save_features(features, stored)
            except OSError as err:  # the store is a cache: serving goes on without it
                log.warning("could not write %s: %s", stored, first_line(err))
        return features, "encoded"

    def _folder_loader(self, name: str):
        return lambda: self._load_folder_image(name)

    def folder_features(self, name: str) -> CachedFeatures:
        return self.cache.get("file:" + self.folder.require(name), self._folder_loader(name))

    def prefetch_after(self, name: str) -> None:
        """Queue the images after ``name`` in the list for background encoding."""
        start = self.folder.index(name)
        following = self.folder.names[start + 1 : start + 1 + self.cache.prefetch_depth]
        self.cache.prefetch([("file:" + n, self._folder_loader(n)) for n in following])

    def _bytes_features(self, data: bytes, what: str) -> CachedFeatures:
        return self.interactor.features_of_bytes(data, what)

    # ----------------------------------------------------------------------------------- the page

    def listing(self) -> dict[str, Any]:
        counts = self.store.counts()
        working = self.sessions.images_in_progress()
        images = [
            {
                "name": n,
                "status": "done" if n in counts else "progress" if n in working else "untouched",
                "objects": counts.get(n, 0),
            }
            for n in self.folder.names
        ]
        return {
            "images": images,
            "done": sum(i["status"] == "done" for i in images),
            "total": len(images),
            "model": {"id": self.model_id, "variant": self.settings.variant, "backend": self.decoder.backend},
        }

    def open_image(self, name: str) -> dict[str, Any]:
        """Make sure the image's features are ready (encoding it if needed) and queue the next ones.

        ``revision`` (0: never saved) goes back with the page's save: a save from an older revision is refused.
        """
        name = self.folder.require(name)
        cached = self.folder_features(name)
        self.prefetch_after(name)
        meta = cached.features.meta
        height, width = meta.original_size
        stored = self.store.load(name)  # objects and revision from one state: a save in between cannot split them
        saved = [
            {"label": obj.label, "mask": png_base64(obj.mask), "clicks": [list(c) for c in obj.clicks]}
            for obj in stored.objects
        ]
        return {
            "name": name,
            "width": width,
            "height": height,
            "encoded": list(meta.encoded_size),
            "source": cached.source,
            "encode_ms": round(cached.seconds * 1000, 1),
            "saved": saved,
            "revision": stored.revision,
            "session_bytes": session_bytes(meta.original_size, meta.encoded_size),
        }

    # ------------------------------------------------------------------------- decoding in the page

    def payload_etag(self, name: str) -> str | None:
        """The validator of ``name``'s payload when its features are cached (None: not yet encoded)."""
        cached = self.cache.peek("file:" + self.folder.require(name))
        return self.browser.etag(cached.features) if cached is not None else None

    def feature_payload(self, name: str) -> tuple[str, bytes]:
        """``GET /api/features/<name>``: the image's decoder inputs for the page (encoding it first if needed;
        the next images are queued for encoding, as when the page opens an image)."""
        name = self.folder.require(name)
        features = self.folder_features(name).features
        self.prefetch_after(name)
        return self.browser.etag(features), self.browser.payload(name, features)

    def new_session(self, name: str, label: Any) -> dict[str, Any]:
        name = self.folder.require(name)
        label = check_label(label)
        session = self.sessions.open(name, self.folder_features(name).features, label)
        return {"session": session.id, "image": name, "label": label}

    def _mask_reply(self, clicks: ClickSession, started: float | None) -> dict[str, Any]:
        reply = {
            "mask": png_base64(clicks.mask),
            "clicks": [[c.x, c.y, c.is_positive] for c in clicks.clicks],
            "area": int(clicks.mask.sum()),
        }
        if started is not None:
            reply["decode_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return reply

    def click(self, session_id: str, x: Any, y: Any, positive: Any) -> dict[str, Any]:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y)) or not isinstance(positive, bool):
            raise RequestError("a click needs integer x, y (image pixels) and a boolean positive")

        def act(session: Any) -> dict[str, Any]:
            if not (0 <= x < session.clicks.width and 0 <= y < session.clicks.height):
                raise RequestError(
                    f"click at x={x}, y={y} lies outside the {session.clicks.width}x{session.clicks.height} image"
                )
            if session.clicks.num_clicks >= MAX_CLICKS_PER_OBJECT:
                raise ConflictError(f"an object takes at most {MAX_CLICKS_PER_OBJECT} clicks: start a new object")
            started = time.perf_counter()
            try:
                session.clicks.add_click(y, x, positive)
            except ClickError as err:
                raise RequestError(first_line(err)) from None
            return self._mask_reply(session.clicks, started)

        return self.sessions.use(session_id, act)

    def undo(self, session_id: str) -> dict[str, Any]:
        def act(session: Any) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                session.clicks.undo()
            except ClickError as err:
                raise ConflictError(first_line(err)) from None
            return self._mask_reply(session.clicks, started)

        return self.sessions.use(session_id, act)

    def reset(self, session_id: str) -> dict[str, Any]:
        def act(session: Any) -> dict[str, Any]:
            session.clicks.reset()
            return self._mask_reply(session.clicks, None)

        return self.sessions.use(session_id, act)

    def close_session(self, session_id: str) -> dict[str, Any]:
        self.sessions.close(session_id)
        return {"closed": session_id}

    def save(self, name: Any, objects: Any, revision: Any) -> dict[str, Any]:
        """Save image ``name`` with ``objects``: ``[{"session": id, "label": str} | {"saved": index, "label": str}]``.

        ``saved`` refers to an object already saved for the image (by its index in ``open_image``'s list);
        ``revision`` is the one ``open_image`` gave. Returns the new revision.

        Raises:
            RequestError: 409 ``stale_revision`` when the image was saved since ``revision`` (nothing
                written); 507 when the disk refuses (nothing changed); 400/404/410 for bad objects.
        """
        if not isinstance(name, str):
            raise RequestError("image must be the image's name")
        name = self.folder.require(name)
        if not isinstance(objects, list):
            raise RequestError("objects must be a list")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise RequestError("revision must be the image's revision from /api/open (an integer, 0 if never saved)")
        size = self.folder_features(name).features.meta.original_size
        stored = self.store.load(name)
        if stored.revision != revision:  # before the sessions: "reload" is the answer, whatever else is wrong
            raise stale_revision_error(name, stored.revision, revision)
        previous = stored.objects  # the list the page's "saved" indexes refer to (the store re-checks the revision)
        masks = []
        for item in objects:
            if not isinstance(item, dict):
                raise RequestError("each object must be {session, label} or {saved, label}")
            label = check_label(item.get("label"))
            if "session" in item:
                session = self.sessions.get(str(item["session"]))
                if session.image != name:
                    raise RequestError(f"click session {session.id} belongs to {session.image}, not {name}")
                with session.lock:
                    clicks = session.clicks
                    masks.append(
                        ObjectMask(
                            label, np.array(clicks.mask), tuple((c.x, c.y, c.is_positive) for c in clicks.clicks)
                        )
                    )
            elif "clicks" in item:  # decoded in the browser: its clicks and the mask it showed
                masks.append(self.browser.checked_object(item, self.folder_features(name).features))
            elif type(item.get("saved")) is int and 0 <= item["saved"] < len(previous):
                kept = previous[item["saved"]]
                masks.append(ObjectMask(label, kept.mask, kept.clicks))
            else:
                raise RequestError(
                    "each object needs a click session id, its clicks and mask, or the index of a saved object"
                )
        try:
            result = self.store.save(name, size, masks, revision)
        except OSError as err:
            raise RequestError(f"cannot write to {self.settings.out}: {first_line(err)}", status=507) from None
        return {
            "image": name,
            "objects": len(masks),
            "revision": result.revision,
            "files": [str(p) for p in result.files],
            "annotations": str(self.store.json_path),
        }

    # -------------------------------------------------------------------------------------- CVAT

    def cvat(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        return self.interactor.handle(body, cancel)

    # ------------------------------------------------------------------------------ Label Studio

    def health(self) -> dict[str, Any]:
        return self.label_studio.health()

    def setup(self, body: Any) -> dict[str, Any]:
        return self.label_studio.setup(body)

    def predict(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        return self.label_studio.predict(body, cancel)


def check_runtime_error(err: BaseException) -> RequestError | None:
    """The 4xx a runtime refusal maps to (None: a server fault)."""
    if isinstance(err, ModelMismatchError):
        return ConflictError(first_line(err))
    if isinstance(err, (ClickError, ImageReadError)):
        return RequestError(first_line(err))
    if isinstance(err, InterFormerRuntimeError):
        return RequestError(first_line(err), status=422)
    return None
