"""The CVAT interactor contract on its own: an image (base64) and points in, a mask out.

Shared by the ``/cvat/interactor`` route of ``interformer-annotate`` and the nuclio function in
``annotate/nuclio/`` (CVAT's serverless deployment), so both answer exactly alike.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from interformer_edge.core.manifest import BASE_PRECISION
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.export import RuntimeSettings, open_export
from interformer_edge.runtime.features import ImageFeatures

from .errors import TooLargeError
from .feature_cache import CachedFeatures, FeatureCache
from .images import decode_image
from .limits import default_max_pixels
from .sessions import ReplaySessions
from .tools import cvat_clicks, cvat_response, parse_cvat, thresholded_mask


class CvatInteractor:
    """Answers CVAT interactor requests; images are cached by the sha256 of their bytes (CVAT sends the
    same image with every click), and a request that adds one point to the previous one costs one decoder run."""

    def __init__(
        self,
        encoder: Encoder,
        cache: FeatureCache,
        replays: ReplaySessions,
        max_upload_bytes: int,
        max_pixels: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.cache = cache
        self.replays = replays
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels if max_pixels is not None else default_max_pixels()

    @classmethod
    def from_export(
        cls,
        export_dir: str | Path,
        threads: int | None = None,
        variant: str = BASE_PRECISION,
        max_side: int | None = None,
        cache_mb: int = 256,
        max_upload_mb: int = 32,
    ) -> CvatInteractor:
        export = open_export(export_dir)
        settings = RuntimeSettings(threads=threads)
        encoder, decoder = export.encoder(settings, max_side), export.decoder(settings, variant)
        return cls(
            encoder, FeatureCache(cache_mb << 20, prefetch_depth=0), ReplaySessions(decoder), max_upload_mb << 20
        )

    def features_of_bytes(self, data: bytes, what: str) -> CachedFeatures:
        """Features of an image file's bytes (a 413 above the size limit, a 415 for a non-image)."""
        if len(data) > self.max_upload_bytes:
            raise TooLargeError(
                f"the {what} has {len(data)} bytes, more than the {self.max_upload_bytes >> 20} MB limit"
            )
        digest = hashlib.sha256(data).hexdigest()

        def load() -> tuple[ImageFeatures, str]:
            rgb = decode_image(data, what, self.max_pixels)
            return self.encoder.encode(rgb, name=f"{what}:{digest[:12]}", image_sha256=digest), "encoded"

        return self.cache.get("sha256:" + digest, load)

    def handle(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        """``{"image", "pos_points", "neg_points", "threshold"}`` → ``{"mask": H x W list of 0/1}`` (or, with
        ``"output": "polygon"`` / ``"box"``, the mask's polygons / tight box: see :func:`~.tools.cvat_response`).

        The clicks are the positive points, then the negative ones, each in the order sent (CVAT keeps
        the two lists apart, so their interleaving is not known). ``cancel`` set: stop before the next click.
        """
        request = parse_cvat(body)
        cached = self.features_of_bytes(request.image, "image")
        height, width = cached.features.meta.original_size
        clicks = cvat_clicks(request.points, height, width)
        key = "cvat:" + cached.features.meta.image_name
        mask = self.replays.run(key, cached.features, clicks, lambda s: thresholded_mask(s, request.threshold), cancel)
        return cvat_response(mask, request.output, request.epsilon_factor)

    def close(self) -> None:
        self.cache.close()
