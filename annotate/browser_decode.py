"""What the page needs to answer clicks in the browser: onnxruntime-web, the decoder, and per image its inputs.

InterFormer's split taken to the annotator's machine: the server encodes each image once (the encoder
and the per-image context graph) and ships the click decoder's per-image inputs; the page runs the
decoder (onnxruntime-web, WebAssembly, in a worker) for every click, with no request to the server.

Per-image payload (``GET /api/features/<image>``), one binary response::

    b"IFE1"  uint32 little-endian N  N bytes of UTF-8 JSON header  zero padding to a multiple of 8
    tensor data, little-endian, each tensor at a multiple of 8 bytes from the data start

with the header ``{"model_id", "image", "original_size": [H, W], "encoded_size": [h, w], "padded_size":
[Hp, Wp], "dtype": "float16", "tensors": [{"name", "shape", "offset", "length", "dtype"}, ...]}``:
``feat0`` ``(1, C0, Hp/4, Wp/4)`` and the context tokens ``ctx0..ctx3`` ``(1, T_i, D_i)``. The context
tokens travel as float16 (their rounding changes no mask); ``feat0`` stays float32, since rounding it to
float16 moves mask edges (IoU 0.996 against the float32 runtime on a bundled photo), which the
annotator's masks must not do (the browser tests hold them to 0.999).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.manifest import BASE_PRECISION, BROWSER_GATE, INT8_VARIANT, Manifest, ManifestError
from interformer_edge.core.messages import first_line
from interformer_edge.core.spec import CONTEXT_NAMES, FEATURE_NAMES, LOGITS_OUTPUT, REF_LABEL_INPUT, ROI_INPUT
from interformer_edge.runtime.decoder import Decoder, context_inputs
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

from .errors import RequestError
from .images import decode_image
from .limits import MAX_CLICKS_PER_OBJECT
from .saving import ObjectMask, check_label
from .tools import check_click_count

log = logging.getLogger("interformer_edge.annotate")

PAYLOAD_MAGIC = b"IFE1"
PAYLOAD_ALIGN = 8
PAYLOAD_TENSORS = (FEATURE_NAMES[0], *CONTEXT_NAMES)  # the decoder's per-image inputs
# Each tensor's type on the wire: float16 halves the bytes where it changes no mask (see the module docstring).
PAYLOAD_DTYPES = {FEATURE_NAMES[0]: "float32", **dict.fromkeys(CONTEXT_NAMES, "float16")}
_WIRE = {"float16": "<f2", "float32": "<f4"}
DECODE_MODES = ("browser", "server")
AUTO = "auto"
PAGE_VARIANTS = (AUTO, BASE_PRECISION, INT8_VARIANT)  # the decoder file pages run (auto: see page_variant)
ORT_WEB_FOLDER = "static/vendor/onnxruntime-web"
ORT_WEB_ROUTE = "/static/ort"  # + /<version>/<file>: a new version is a new URL, never a stale cached file
MODEL_ROUTE = "/model"  # + /<sha256 prefix>/decoder.onnx
PAGE_MODULE_ROUTE = "/static/decode"  # + /<file>.mjs: the page's own modules (click protocol, worker)
PAGE_MODULE_FOLDER = "static/decode"
MEDIA_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}


class VendorError(RuntimeError):
    """The vendored onnxruntime-web files are missing or not the ones recorded."""


@dataclass(frozen=True)
class OrtWeb:
    """The vendored onnxruntime-web: its version and files (name → path), checked against ``version.json``."""

    version: str
    files: dict[str, Path]

    @property
    def base_url(self) -> str:
        return f"{ORT_WEB_ROUTE}/{self.version}/"


def load_ort_web() -> OrtWeb:
    """The vendored onnxruntime-web, each file's sha256 checked against its record.

    Raises:
        VendorError: a file is missing or differs from the record (a broken install or a half-done update).
    """
    folder = Path(str(files("interformer_edge.annotate").joinpath(ORT_WEB_FOLDER)))
    try:
        record = json.loads((folder / "version.json").read_text(encoding="utf-8"))
        found = {}
        for name, digest in record["files"].items():
            path = folder / name
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise VendorError(f"{path} is not the file recorded in version.json")
            found[name] = path
    except (OSError, ValueError, KeyError) as err:
        raise VendorError(f"onnxruntime-web is not installed correctly in {folder}: {err}") from None
    return OrtWeb(str(record["version"]), found)


@dataclass(frozen=True)
class BrowserDecoder:
    """The decoder file the page downloads: its path, URL (by content hash: cached for good) and size."""

    path: Path
    digest: str
    variant: str = BASE_PRECISION

    @property
    def url(self) -> str:
        return f"{MODEL_ROUTE}/{self.digest}/decoder.onnx"


def browser_decoder(manifest: Manifest, variant: str = BASE_PRECISION) -> BrowserDecoder:
    """The export's ONNX decoder of ``variant`` (its sha256 from the manifest names its URL)."""
    path = manifest.graph_path("decoder", "onnx", variant)
    recorded = {f.name: f.sha256 for f in manifest.files}
    digest = recorded.get(path.name) or hashlib.sha256(path.read_bytes()).hexdigest()
    return BrowserDecoder(path, digest[:16], variant)


def browser_gate_problem(manifest: Manifest, ort_web: OrtWeb) -> str | None:
    """Why pages may not run the export's INT8 decoder (None: they may): it has to have passed its
    onnxruntime-web gate (``interformer-quantize --browser``) with this onnxruntime-web, on this very file."""
    quantized = manifest.quantized_variant("decoder", INT8_VARIANT)
    if quantized is None or "onnx" not in quantized.files:
        return "the export has no INT8 ONNX decoder"
    record = quantized.gates.get(BROWSER_GATE)
    if not isinstance(record, dict):
        return "its INT8 decoder was not gated in a browser (interformer-quantize --browser-only)"
    if record.get("passed") is not True:
        return f"its INT8 decoder failed its gate in a browser (mean IoU {record.get('mean_iou_vs_fp32')})"
    if record.get("onnxruntime_web") != ort_web.version:
        return (
            f"its INT8 decoder was gated with onnxruntime-web {record.get('onnxruntime_web')}, pages get "
            f"{ort_web.version} (interformer-quantize --browser-only gates it again)"
        )
    recorded = {f.name: f.sha256 for f in manifest.files}.get(quantized.files["onnx"])
    if recorded is None or record.get("sha256") != recorded:
        return "its INT8 decoder file is not the one gated in a browser"
    return None


def page_variant(manifest: Manifest, asked: str, ort_web: OrtWeb) -> tuple[str, str]:
    """The decoder file pages run (``fp32`` or ``int8``) and why, for ``asked`` in :data:`PAGE_VARIANTS`.

    ``auto``: INT8 when it passed its gate in a browser (:func:`browser_gate_problem`) and was the faster of
    the two there (the gate times both in onnxruntime-web); else FP32.

    Raises:
        RequestError: ``asked`` is unknown, or ``int8`` without a passing gate in a browser.
    """
    if asked not in PAGE_VARIANTS:
        raise RequestError(f"the page's decoder must be one of {', '.join(PAGE_VARIANTS)}, not {asked!r}")
    if asked == BASE_PRECISION:
        return BASE_PRECISION, "asked for"
    problem = browser_gate_problem(manifest, ort_web)
    if problem is not None:
        if asked == INT8_VARIANT:
            raise RequestError(f"pages cannot run the INT8 decoder: {problem}")
        return BASE_PRECISION, problem
    quantized = manifest.quantized_variant("decoder", INT8_VARIANT)
    assert quantized is not None  # browser_gate_problem found it
    latency = quantized.gates[BROWSER_GATE].get("latency_ms", {})
    fp32_ms, int8_ms = latency.get(BASE_PRECISION), latency.get(INT8_VARIANT)
    timed = f"INT8 {int8_ms} ms vs FP32 {fp32_ms} ms per click in a browser at {latency.get('size')}"
    if asked == INT8_VARIANT:
        return INT8_VARIANT, f"asked for; {timed}"
    if not (isinstance(fp32_ms, int | float) and isinstance(int8_ms, int | float) and int8_ms < fp32_ms):
        return BASE_PRECISION, f"INT8 passed its gate in a browser but is not faster there ({timed})"
    return INT8_VARIANT, f"passed its gate in a browser; {timed}"


def model_info(
    manifest: Manifest, model_id: str, decoder: BrowserDecoder, ort_web: OrtWeb, mode: str
) -> dict[str, Any]:
    """``GET /api/model``: what the page needs to run the click protocol and the decoder itself."""
    zoom = manifest.zoom_in
    return {
        "model_id": model_id,
        "decode": mode,
        "decoder": {"url": decoder.url, "variant": decoder.variant, "bytes": decoder.path.stat().st_size},
        "inputs": {
            **{name: name for name in PAYLOAD_TENSORS},
            "ref_label": REF_LABEL_INPUT,
            "roi": ROI_INPUT if zoom.uses_roi else None,
            "logits": LOGITS_OUTPUT,
        },
        "uses_roi": zoom.uses_roi,
        "zoom_in": {
            "expand_ratio": zoom.expand_ratio,
            "min_size": zoom.min_size,
            "stride": zoom.stride,
            "start_click": zoom.start_click,
        },
        "clicks": {"inner_radius": manifest.clicks.inner_radius, "outer_radius": manifest.clicks.outer_radius},
        "ref_label_codes": dict(manifest.clicks.ref_label_codes),
        "ort": {"version": ort_web.version, "base": ort_web.base_url},
        "max_clicks": MAX_CLICKS_PER_OBJECT,
        "page_modules": PAGE_MODULE_ROUTE + "/",
    }


def payload_etag(model_id: str, features: ImageFeatures) -> str:
    """A validator of one image's payload: the model and the image's content."""
    return '"' + hashlib.sha256(f"{model_id}:{features.meta.image_sha256}".encode()).hexdigest()[:32] + '"'


def feature_payload(name: str, model_id: str, features: ImageFeatures, inputs: dict[str, np.ndarray]) -> bytes:
    """One image's payload (see the module docstring) from the decoder's per-image ``inputs``
    (``Decoder.image_inputs``: ``feat0`` and ``ctx0..ctx3``, float32)."""
    meta = features.meta
    tensors, blobs, offset = [], [], 0
    for tensor in PAYLOAD_TENSORS:
        dtype = PAYLOAD_DTYPES[tensor]
        data = np.ascontiguousarray(inputs[tensor], dtype=_WIRE[dtype]).tobytes()
        shape = list(inputs[tensor].shape)
        tensors.append(
            {"name": tensor, "shape": shape, "offset": offset, "length": int(inputs[tensor].size), "dtype": dtype}
        )
        padding = -len(data) % PAYLOAD_ALIGN
        blobs.append(data + b"\0" * padding)
        offset += len(data) + padding
    header = json.dumps(
        {
            "model_id": model_id,
            "image": name,
            "original_size": list(meta.original_size),
            "encoded_size": list(meta.encoded_size),
            "padded_size": list(meta.padded_size),
            "dtype": "float16",
            "tensors": tensors,
        }
    ).encode("utf-8")
    head = PAYLOAD_MAGIC + struct.pack("<I", len(header)) + header
    return head + b"\0" * (-len(head) % PAYLOAD_ALIGN) + b"".join(blobs)


def read_payload(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the tensors of a payload (the inverse of :func:`feature_payload`; for tests and tools)."""
    if data[:4] != PAYLOAD_MAGIC:
        raise ValueError("not an interformer feature payload")
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    start = 8 + length + (-(8 + length) % PAYLOAD_ALIGN)
    arrays = {
        t["name"]: np.frombuffer(
            data, dtype=_WIRE[t.get("dtype", header["dtype"])], count=t["length"], offset=start + t["offset"]
        ).reshape(t["shape"])
        for t in header["tensors"]
    }
    return header, arrays


# ------------------------------------------------------------------------------ saving what the page showed

# How well the server's replay of a saved object's clicks must agree with the page's mask. FP32 on both sides
# agrees to >= 0.999 per click (0.9967 on a 12 MP photo). An INT8 decoder on either side is gated on its mean
# IoU vs FP32 (>= 0.98), not on single clicks (seen down to 0.924 in a browser), and two INT8 implementations
# (WebAssembly, native) differ from each other more than either from FP32: a wider margin, which still refuses
# a mask of another object or a painted-over one.
SAVE_CHECK_IOU = {BASE_PRECISION: 0.9, INT8_VARIANT: 0.8}


def page_object(item: dict[str, Any], size: tuple[int, int]) -> tuple[np.ndarray, tuple[tuple[int, int, bool], ...]]:
    """An object decoded in the browser, as the page saves it: ``{"clicks": [[x, y, positive], ...], "mask":
    <PNG base64 at the photo's size>}`` → ``((H, W) bool mask, clicks)``.

    Raises:
        RequestError: malformed clicks or mask, a mask of another size, too many clicks.
    """
    height, width = size
    clicks = item.get("clicks")
    if not isinstance(clicks, list) or not clicks:
        raise RequestError("a browser-decoded object needs its clicks: [[x, y, positive], ...]")
    check_click_count(len(clicks))
    parsed = []
    for click in clicks:
        if not (
            isinstance(click, list)
            and len(click) == 3
            and all(type(v) is int for v in click[:2])
            and isinstance(click[2], bool)
            and 0 <= click[0] < width
            and 0 <= click[1] < height
        ):
            raise RequestError(f"each click must be [x, y, positive] inside the {width}x{height} image")
        parsed.append((click[0], click[1], click[2]))
    encoded = item.get("mask")
    if not isinstance(encoded, str):
        raise RequestError("a browser-decoded object needs its mask (a PNG, base64)")
    try:
        data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("the object's mask is not base64") from None
    rgb = decode_image(data, "object's mask", max_pixels=height * width)
    if rgb.shape[:2] != (height, width):
        raise RequestError(f"the object's mask is {rgb.shape[1]}x{rgb.shape[0]}, the image is {width}x{height}")
    return rgb[..., 0] > 127, tuple(parsed)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class BrowserSide:
    """The server's part in pages that decode clicks themselves: what they download, and checking their saves.

    Args:
        manifest: the export's manifest; decoder: the server's own decoder (per-image context, save checks).
        mode: the default for pages (``browser`` or ``server``); ``server`` when onnxruntime-web or an ONNX
            decoder is missing (logged), so the page asks the server for every click, as before.
        check_saves: replay a saved object's clicks and refuse a mask that disagrees (:data:`SAVE_CHECK_IOU`).
        variant: the decoder file pages run, one of :data:`PAGE_VARIANTS` (see :func:`page_variant`).
    """

    def __init__(
        self,
        manifest: Manifest,
        decoder: Decoder,
        model_id: str,
        mode: str,
        check_saves: bool,
        variant: str = AUTO,
    ) -> None:
        if mode not in DECODE_MODES:
            raise RequestError(f"decode must be one of {', '.join(DECODE_MODES)}, not {mode!r}")
        self.manifest = manifest
        self.decoder = decoder
        self.model_id = model_id
        self.check_saves = check_saves
        self.variant_reason = ""
        try:
            self.ort_web: OrtWeb | None = load_ort_web()
            chosen, self.variant_reason = page_variant(manifest, variant, self.ort_web)
            self.file: BrowserDecoder | None = browser_decoder(manifest, chosen)
        except (VendorError, ManifestError) as err:
            log.warning("clicks are answered by the server only: %s", first_line(err))
            self.ort_web, self.file, mode = None, None, "server"
        self.mode = mode

    @property
    def save_check_iou(self) -> float:
        """The agreement a saved object needs (:data:`SAVE_CHECK_IOU`): INT8 on either side widens it."""
        page_int8 = self.file is not None and self.file.variant != BASE_PRECISION
        server_int8 = self.decoder.target is not None
        return SAVE_CHECK_IOU[INT8_VARIANT if page_int8 or server_int8 else BASE_PRECISION]

    def info(self) -> dict[str, Any]:
        """``GET /api/model``."""
        if self.ort_web is None or self.file is None:
            return {"model_id": self.model_id, "decode": "server"}
        return model_info(self.manifest, self.model_id, self.file, self.ort_web, self.mode)

    def etag(self, features: ImageFeatures) -> str:
        return payload_etag(self.model_id, features)

    def payload(self, name: str, features: ImageFeatures) -> bytes:
        """The image's payload: ``feat0`` and the context tokens (one context run; the server's own decoder is
        not compiled for the image's size, as ``Decoder.image_inputs`` would: the page answers its clicks)."""
        inputs = context_inputs(self.decoder.context, features.float32_maps())
        return feature_payload(name, self.model_id, features, inputs)

    def checked_object(self, item: dict[str, Any], features: ImageFeatures) -> ObjectMask:
        """A browser-decoded object to save: the page's own mask, checked by replaying its clicks."""
        mask, clicks = page_object(item, features.meta.original_size)
        if self.check_saves:
            session = ClickSession(self.decoder, features)
            for x, y, positive in clicks:
                session.add_click(y, x, positive)
            agreement, needed = mask_iou(mask, np.asarray(session.mask)), self.save_check_iou
            if agreement < needed:
                raise RequestError(
                    f"an object's mask does not match its clicks (IoU {agreement:.3f} with the server's decoder, "
                    f"below {needed}): not saved",
                    status=422,
                )
        return ObjectMask(check_label(item.get("label")), mask, clicks)
