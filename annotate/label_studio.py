"""The Label Studio ML backend: ``/health``, ``/setup``, ``/predict``, ``/webhook``, and fetching task images.

Label Studio asks ``/predict`` with the task and the smart keypoints clicked so far; the answer is a
brush mask in Label Studio's RLE (shapes in :mod:`.tools`). "Retrieve predictions" (no keypoints in
the request) answers, per task, the mask of the smart keypoints saved in its newest annotation, and an
empty prediction for a task that has none (the model needs clicks), so Label Studio gets one result per
task instead of logging "results field must be a list with at least one item".

A task's image is a served file when its reference names one (relative path, our own ``/files/`` URL, a
local-files ``?d=`` URL), inline as a data URI, or else downloaded from ``--label-studio-url``: from
there only, over http(s), without redirects, with the API key sent to that origin only. The key is
either a **Personal Access Token** (Label Studio 1.23's default: a JWT refresh token), exchanged at
``/api/token/refresh/`` for a 5-minute access token sent as ``Authorization: Bearer``, refreshed
before it expires and again after a 401; or a **legacy token** (organisations that turned them on),
sent as ``Authorization: Token``. Which one a key is comes from its form (:func:`token_kind`).

What Label Studio 1.23.2 shows of a backend's failure (``label_studio/ml/api_connector.py``,
``ml/models.py``, the editor's ``loadSuggestions``): for a 4xx/5xx it keeps only ``requests``'
``raise_for_status()`` text (``"502 Server Error: Bad Gateway for url: …/predict"``: the status and
the standard reason phrase, which uvicorn does not let an app change), drops the body, and hands the
editor ``{"errors": [that text]}``, which the editor ignores (it reads ``data.result`` only). A 200
without ``results`` is replaced by its own fixed message. So no text of ours reaches the annotator;
the failure and its reason are logged here (``interformer_edge.annotate``, WARNING), and the message
in our JSON body is what a ``curl`` or the ML backend's log shows. The one readable case is a wrong
or missing access token for this server: our 401 on ``/health`` makes Label Studio's Connect Model
dialog say the authentication parameters are missing or incorrect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np

from interformer_edge.core.messages import first_line

from .errors import RequestError, TooLargeError
from .feature_cache import CachedFeatures
from .images import ImageFolder
from .sessions import ReplaySessions
from .tools import KeypointContext, LabelConfig, brush_result, keypoint_clicks, parse_context, parse_label_config

log = logging.getLogger("interformer_edge.annotate")

LABEL_STUDIO_TIMEOUT_SECONDS = 30
REFRESH_PATH = "api/token/refresh/"  # Label Studio's JWT refresh view (rest_framework_simplejwt)
REFRESH_MARGIN_SECONDS = 30  # an access token this close to its expiry is replaced before use
ACCESS_FALLBACK_SECONDS = 240  # an access token without a readable "exp" is used this long (Label Studio: 5 min)

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

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")

LEGACY, PERSONAL, ACCESS = "legacy token", "Personal Access Token", "JWT access token"


def check_label_studio_url(url: str | None) -> str | None:
    """``--label-studio-url`` as given, if it is an http(s) URL with a host (else a :class:`RequestError`)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(f"--label-studio-url must be an http(s) address (http://127.0.0.1:8080), not {url[:80]!r}")
    return url


def _jwt_part(part: str) -> dict[str, Any] | None:
    """A JWT header or payload: base64url JSON object (None if it is not one)."""
    if not _BASE64URL.match(part):
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def jwt_claims(key: str) -> dict[str, Any] | None:
    """The payload of a JWT (three base64url parts, a header naming its ``alg``), unverified; None otherwise."""
    parts = key.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    header, payload = _jwt_part(parts[0]), _jwt_part(parts[1])
    if header is None or payload is None or "alg" not in header or (parts[2] and not _BASE64URL.match(parts[2])):
        return None
    return payload


def token_kind(key: str) -> str:
    """Which kind of Label Studio key ``key`` is, from its form alone.

    A JWT (three dot-separated base64url parts whose first two are JSON, the header with an ``alg``)
    whose ``token_type`` is ``refresh`` is a Personal Access Token; another JWT is an access token (used
    as it is until it expires). Anything else is a legacy token (Django REST framework's: 40 hex
    digits, never a dot), sent as ``Token <key>``.
    """
    claims = jwt_claims(key)
    if claims is None:
        return LEGACY
    return PERSONAL if claims.get("token_type") == "refresh" else ACCESS


class LabelStudioAuth:
    """The ``Authorization`` header for Label Studio, from the key the server was started with.

    Raises:
        RequestError: (502) Label Studio refused or failed the token exchange.
    """

    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/") + "/"
        self.key = key
        self.kind = token_kind(key)
        self._access: str | None = key if self.kind == ACCESS else None
        self._expires = self._expiry(key) if self.kind == ACCESS else 0.0
        self._lock = threading.Lock()

    @staticmethod
    def _expiry(token: str) -> float:
        exp = (jwt_claims(token) or {}).get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            return float(exp)
        return time.time() + ACCESS_FALLBACK_SECONDS

    def header(self, renew: bool = False) -> str:
        """``Token <key>`` or ``Bearer <access>``; ``renew``: exchange the PAT again (after a 401)."""
        if self.kind == LEGACY:
            return f"Token {self.key}"
        if self.kind == ACCESS:
            return f"Bearer {self.key}"
        with self._lock:
            if renew or self._access is None or time.time() > self._expires - REFRESH_MARGIN_SECONDS:
                self._access = self._refresh()
                self._expires = self._expiry(self._access)
            return f"Bearer {self._access}"

    def _refresh(self) -> str:
        url = urljoin(self.url, REFRESH_PATH)
        request = urllib.request.Request(
            url,
            data=json.dumps({"refresh": self.key}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with _NO_REDIRECTS.open(request, timeout=LABEL_STUDIO_TIMEOUT_SECONDS) as response:
                answer = json.loads(response.read(1 << 16))
        except urllib.error.HTTPError as err:
            why = (
                "it refused the Personal Access Token (LABEL_STUDIO_API_KEY): revoked, expired or made by "
                "another Label Studio; create one in Account & Settings → Personal Access Token"
                if err.code in (400, 401, 403)
                else f"it answered {err.code}"
            )
            log.warning("Label Studio token exchange at %s failed: %s", url, why)
            raise RequestError(f"cannot get an access token from Label Studio at {url}: {why}", status=502) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            log.warning("Label Studio token exchange at %s failed: %s", url, first_line(err))
            raise RequestError(f"cannot reach Label Studio at {url}: {first_line(err)}", status=502) from None
        access = answer.get("access") if isinstance(answer, dict) else None
        if not isinstance(access, str) or not access:
            log.warning("Label Studio's answer at %s has no access token", url)
            raise RequestError(f"Label Studio's answer at {url} has no access token", status=502)
        return access


class LabelStudioClient:
    """Downloads of task images from the one Label Studio the server was started with.

    Raises:
        RequestError: (at construction) a URL that is not http(s).
    """

    def __init__(self, url: str | None, token: str | None, max_bytes: int) -> None:
        self.url = check_label_studio_url(url)
        self.token = token
        self.max_bytes = max_bytes
        self.auth = LabelStudioAuth(self.url, token) if self.url and token else None

    def fetch(self, reference: str) -> bytes:
        """An upload / local-files URL of Label Studio's, downloaded with the API key (see the module docstring).

        Raises:
            RequestError: 404 for a reference outside ``--label-studio-url`` (or none set), 502 when Label
                Studio fails or refuses (the reason logged), 413 above the size limit.
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
        try:
            data = self._download(url, renew=False)
        except urllib.error.HTTPError as err:
            if err.code != 401 or self.auth is None or self.auth.kind != PERSONAL:
                raise self._refused(url, err.code) from None
            try:  # the access token may have been revoked or expired early: exchange the PAT again, once
                data = self._download(url, renew=True)
            except urllib.error.HTTPError as again:
                raise self._refused(url, again.code) from None
            except (urllib.error.URLError, OSError) as again:
                raise self._unreachable(url, again) from None
        except (urllib.error.URLError, OSError) as err:
            raise self._unreachable(url, err) from None
        if len(data) > self.max_bytes:
            raise TooLargeError(f"{url} is larger than the {self.max_bytes >> 20} MB limit")
        return data

    def _download(self, url: str, renew: bool) -> bytes:
        request = urllib.request.Request(url)
        if self.auth is not None:
            request.add_unredirected_header("Authorization", self.auth.header(renew))
        with _NO_REDIRECTS.open(request, timeout=LABEL_STUDIO_TIMEOUT_SECONDS) as response:
            return response.read(self.max_bytes + 1)

    def _refused(self, url: str, code: int) -> RequestError:
        if code in (401, 403):
            if self.auth is None:
                why = "no API key was given: set LABEL_STUDIO_API_KEY (a Personal Access Token)"
            elif self.auth.kind == LEGACY:
                why = (
                    "it refused the legacy token: Label Studio 1.23 turns legacy tokens off for new organisations, "
                    "give a Personal Access Token (Account & Settings) instead"
                )
            else:
                why = f"it refused the {self.auth.kind}"
        elif code == 404:
            why = "no such file there (the task's image was deleted, or local files serving is off)"
        else:
            why = f"it answered {code}"
        log.warning("cannot download the task image %s from Label Studio: %s (HTTP %s)", url, why, code)
        return RequestError(f"cannot download {url} from Label Studio: {why} (HTTP {code})", status=502)

    @staticmethod
    def _unreachable(url: str, err: BaseException) -> RequestError:
        log.warning("cannot download the task image %s: %s", url, first_line(err))
        return RequestError(f"cannot fetch {url}: {first_line(err)}", status=502)


def saved_keypoints(task: dict[str, Any]) -> KeypointContext | None:
    """The smart keypoints of the task's newest annotation that has some (skipped annotations left out)."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        return None
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    for annotation in sorted(kept, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""), reverse=True):
        results = annotation.get("result")
        if isinstance(results, list):
            context = parse_context({"params": {"context": {"result": results}}})
            if context is not None:
                return context
    return None


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
        self.webhook_actions: Counter[str] = Counter()  # events Label Studio posted to /webhook, by action
        self._lock = threading.Lock()

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

    def webhook(self, body: Any) -> dict[str, Any]:
        """Label Studio's events (``ANNOTATION_CREATED`` after each Submit, project and task changes): counted
        and acknowledged; this backend does not train."""
        action = body.get("action") if isinstance(body, dict) else None
        action = action if isinstance(action, str) and action else "unknown"
        with self._lock:
            self.webhook_actions[action[:64]] += 1
        log.debug("Label Studio event %s", action[:64])
        return {"status": "ok", "action": action[:64]}

    def predict(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        """``/predict``: with smart keypoints in ``params.context`` (the editor), the mask for them; without
        (Retrieve predictions, a task opened), one prediction per task from its saved keypoints."""
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object with tasks, label_config and params")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            raise RequestError("tasks must be a non-empty list of task objects")
        context = parse_context(body)
        config = parse_label_config(body.get("label_config"))
        if context is not None:  # the editor: the clicks so far on one task
            return {
                "results": [self._prediction(tasks[0], config, context, cancel)],
                "model_version": self.model_version,
            }
        results = []
        for task in tasks:
            saved = saved_keypoints(task)
            if saved is None:
                log.info(
                    'task %s has no smart keypoints: InterFormer segments from clicks (KeyPointLabels smart="true"), '
                    "so its prediction is empty",
                    str(task.get("id"))[:20],
                )
                results.append({"result": [], "score": 0.0, "model_version": self.model_version})
                continue
            try:
                results.append(self._prediction(task, config, saved, cancel))
            except RequestError as err:  # one task's failure leaves the others' predictions
                if err.status == 499:
                    raise
                log.warning("task %s: no prediction: %s", str(task.get("id"))[:20], err)
                results.append({"result": [], "score": 0.0, "model_version": self.model_version})
        return {"results": results, "model_version": self.model_version}

    def _prediction(
        self, task: dict[str, Any], config: LabelConfig, context: KeypointContext, cancel: threading.Event | None
    ) -> dict[str, Any]:
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
        return brush_result(mask, config, context.label, 1.0, self.model_version, result_id)

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
