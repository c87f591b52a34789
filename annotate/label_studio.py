"""The Label Studio ML backend: ``/health``, ``/setup``, ``/predict``, and fetching task images from Label Studio.

Label Studio asks ``/predict`` with the task and the smart keypoints clicked so far; the answer is a
brush mask in Label Studio's RLE (shapes in :mod:`.tools`). A task's image is a served file when its
reference names one (relative path, our own ``/files/`` URL, a local-files ``?d=`` URL), inline as a
data URI, or else downloaded from ``--label-studio-url``: from there only, over http(s), without
redirects, with the API key sent to that origin only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np

from interformer_edge.core.messages import first_line

from .errors import RequestError, TooLargeError
from .feature_cache import CachedFeatures
from .images import ImageFolder
from .sessions import ReplaySessions
from .tools import brush_result, keypoint_clicks, parse_context, parse_label_config

log = logging.getLogger("interformer_edge.annotate")

LABEL_STUDIO_TIMEOUT_SECONDS = 30

# Label Studio downloads: http(s) only (no file://, ftp://, data:) and no redirect handler, so a 3xx is
# an error like any other status: a redirect could lead the token to another host.
_NO_REDIRECTS = urllib.request.OpenerDirector()
for _handler in (
    urllib.request.HTTPHandler,
    urllib.request.HTTPSHandler,
    urllib.request.HTTPErrorProcessor,
    urllib.request.HTTPDefaultErrorHandler,
):
    _NO_REDIRECTS.add_handler(_handler())


def check_label_studio_url(url: str | None) -> str | None:
    """``--label-studio-url`` as given, if it is an http(s) URL with a host (else a :class:`RequestError`)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(f"--label-studio-url must be an http(s) address (http://127.0.0.1:8080), not {url[:80]!r}")
    return url


class LabelStudioClient:
    """Downloads of task images from the one Label Studio the server was started with.

    Raises:
        RequestError: (at construction) a URL that is not http(s).
    """

    def __init__(self, url: str | None, token: str | None, max_bytes: int) -> None:
        self.url = check_label_studio_url(url)
        self.token = token
        self.max_bytes = max_bytes

    def fetch(self, reference: str) -> bytes:
        """An upload / local-files URL of Label Studio's, downloaded with the API key (``Authorization: Token``),
        as Label Studio's own backends do.

        Raises:
            RequestError: 404 for a reference outside ``--label-studio-url`` (or none set), 502 when Label
                Studio fails, 413 above the size limit.
        """
        parts = urlsplit(reference)
        if not (parts.scheme in ("http", "https") or (not parts.scheme and reference.startswith("/data/"))):
            raise RequestError(f"{reference[:80]} matches no served image", status=404)
        if not self.url:
            raise RequestError(
                f"{reference[:80]} is not a served image, and no --label-studio-url (LABEL_STUDIO_URL) is set to fetch "
                "it from",
                status=404,
            )
        base = self.url.rstrip("/") + "/"
        url = urljoin(base, reference)
        if not url.startswith(base):
            raise RequestError(f"{reference[:80]} is neither a served image nor under --label-studio-url", status=404)
        request = urllib.request.Request(url)
        if self.token:
            request.add_unredirected_header("Authorization", f"Token {self.token}")
        try:
            with _NO_REDIRECTS.open(request, timeout=LABEL_STUDIO_TIMEOUT_SECONDS) as response:
                data = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as err:
            log.warning("Label Studio answered %s for %s", err.code, url)
            raise RequestError(f"Label Studio answered {err.code} for {url}", status=502) from None
        except (urllib.error.URLError, OSError) as err:
            log.warning("cannot fetch %s: %s", url, first_line(err))
            raise RequestError(f"cannot fetch {url}: {first_line(err)}", status=502) from None
        if len(data) > self.max_bytes:
            raise TooLargeError(f"{url} is larger than the {self.max_bytes >> 20} MB limit")
        return data


class LabelStudioBackend:
    """Answers Label Studio's ML-backend requests from the annotator's features and replayed click sessions.

    Args:
        client: downloads of task images Label Studio hosts.
        folder: the served images (a task naming one of them needs no download).
        folder_features: features of a served image by name (cached).
        bytes_features: features of an image file's bytes (cached by content hash).
        replays: the click sessions of tools that resend every click.
        model_version: what Label Studio shows as the model's version.
    """

    def __init__(
        self,
        client: LabelStudioClient,
        folder: ImageFolder,
        folder_features: Callable[[str], CachedFeatures],
        bytes_features: Callable[[bytes, str], CachedFeatures],
        replays: ReplaySessions,
        model_version: str,
    ) -> None:
        self.client = client
        self.folder = folder
        self.folder_features = folder_features
        self.bytes_features = bytes_features
        self.replays = replays
        self.model_version = model_version

    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "InterFormer", "model_version": self.model_version}

    def setup(self, body: Any) -> dict[str, Any]:
        """Label Studio's hello. Its ``hostname`` and ``access_token`` are not taken: any client can post
        here, and taking them would let it point our downloads, with their token, at a listener of its
        own. Where uploads are fetched from comes from ``--label-studio-url`` only."""
        offered = body.get("hostname") if isinstance(body, dict) else None
        if isinstance(offered, str) and offered and offered.rstrip("/") != (self.client.url or "").rstrip("/"):
            log.info(
                "/setup names Label Studio at %s; uploads are fetched from --label-studio-url (%s) only",
                offered[:200],
                self.client.url or "not set",
            )
        return {"model_version": self.model_version}

    def predict(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        """``/predict``: a brush mask for the smart keypoints of ``params.context`` (none yet: no result)."""
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object with tasks, label_config and params")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not isinstance(tasks[0], dict):
            raise RequestError("tasks must be a non-empty list of task objects")
        context = parse_context(body)
        if context is None:  # no click yet (Label Studio also asks when a task opens)
            return {"results": [], "model_version": self.model_version}
        config = parse_label_config(body.get("label_config"))
        task = tasks[0]
        data = task.get("data")
        if not isinstance(data, dict):
            raise RequestError("the task's data must be an object (its fields, e.g. data.image)")
        reference = data.get(config.image_key)
        if not isinstance(reference, str) or not reference:
            raise RequestError(f"the task has no data.{config.image_key} (the Image tag's value)")
        cached, key = self._task_features(reference)
        height, width = cached.features.meta.original_size
        clicks = keypoint_clicks(context, height, width)
        mask = self.replays.run("ls:" + key, cached.features, clicks, lambda s: np.array(s.mask), cancel)
        result_id = hashlib.sha256(f"{task.get('id')}:{clicks}".encode()).hexdigest()[:10]
        prediction = brush_result(mask, config, context.label, 1.0, self.model_version, result_id)
        return {"results": [prediction], "model_version": self.model_version}

    def _task_features(self, reference: str) -> tuple[CachedFeatures, str]:
        """A task's image: a served file (by name or by our own URL), inline, else fetched from Label Studio."""
        if reference.startswith("data:"):  # the image inline, as a data URI
            try:
                data = base64.b64decode(reference.split(",", 1)[1], validate=True)
            except (IndexError, binascii.Error, ValueError):
                raise RequestError("the task's data URI is not base64 image data") from None
            cached = self.bytes_features(data, "task image")
            return cached, cached.features.meta.image_name
        name = self.folder.match(reference)
        if name is not None:
            return self.folder_features(name), "file:" + name
        cached = self.bytes_features(self.client.fetch(reference), "task image")
        return cached, cached.features.meta.image_name
