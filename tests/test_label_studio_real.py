"""The ML backend against a real Label Studio 1.23.2, set up as a user does, in its own virtualenv.

Label Studio runs from ``scripts/tool_envs.py``'s environment (never the project's), on 127.0.0.1 with
sqlite in a temporary folder (a copy of the migrated empty database the script prepared), legacy
tokens off: the user logs in and makes a Personal Access Token (as Account & Settings does), creates a
project with a smart KeyPointLabels + BrushLabels config, uploads an image and imports a task naming a
served file, and connects our server (basic auth with our access token). Then what the editor does:
``/api/ml/{id}/interactive-annotating`` with one and two keypoints, the brush RLE decoded by Label
Studio's own converter (``label_studio_sdk.converter.brush``) and compared with the runtime's mask;
Submit (Label Studio posts ``ANNOTATION_CREATED`` to our ``/webhook``); "Retrieve predictions"; and a
task whose image cannot be downloaded. The token exchange (PAT -> access, refresh on expiry and after a
401) is also checked against a stand-in, where expiry can be forced.
"""

from __future__ import annotations

import base64
import http.cookiejar
import io
import json
import logging
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from live_server import LiveServer, free_port
from PIL import Image
from tool_servers import iou, runtime_mask, tool_envs, tool_python

from interformer_edge.assets import PHOTOS_DIR

pytestmark = pytest.mark.bundled_model

LS_CONFIG = """
<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Cat" background="#FF0000"/></BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Cat" background="#000000" showInline="true"/>
  </KeyPointLabels>
</View>
"""
EMAIL, PASSWORD = "admin@example.com", "interformer-Test-123"
OUR_TOKEN = "ours-" + uuid.uuid4().hex  # our server's access token: Label Studio connects with basic auth
START_SECONDS = 60


# ------------------------------------------------------------------------------------------ Label Studio


class LabelStudio:
    """A Label Studio process on loopback, and calls to its REST API."""

    def __init__(self, python: Path, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        envs = tool_envs()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(envs.LABEL_STUDIO_QUIET)
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(data),
            ML_BLOCK_LOCAL_IP="false",  # our backend is on loopback
            SSRF_PROTECTION_ENABLED="false",  # else the backend's webhook is refused
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="false",  # the default of a new organisation: PATs only
            LOG_LEVEL="WARNING",
        )
        self.log_path = data.parent / "label-studio.log"
        command = [str(python.parent / "label-studio"), "start", "--internal-host", "127.0.0.1"]
        command += ["--port", str(self.port), "--no-browser", "--username", EMAIL, "--password", PASSWORD]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.access: str | None = None

    def wait(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"Label Studio did not start in {START_SECONDS} s; its log ends:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def personal_access_token(self) -> str:
        """Log in with the form and create a PAT, as Account & Settings → Personal Access Token does."""
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.open(self.url + "/user/login/", timeout=30).read()

        def csrf() -> str:
            return next(c.value for c in jar if c.name == "csrftoken")

        form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf(), "email": EMAIL, "password": PASSWORD})
        login = urllib.request.Request(
            self.url + "/user/login/", data=form.encode(), headers={"Referer": self.url + "/user/login/"}
        )
        browser.open(login, timeout=30).read()
        create = urllib.request.Request(
            self.url + "/api/token/",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", "X-CSRFToken": csrf(), "Referer": self.url + "/"},
        )
        with browser.open(create, timeout=30) as answer:
            return json.loads(answer.read())["token"]

    def use(self, pat: str) -> None:
        self.access = self.call("POST", "/api/token/refresh/", {"refresh": pat}, auth=False)["access"]

    def call(self, method: str, path: str, body=None, auth: bool = True, files: dict | None = None):
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.access}"
        data = None
        if files is not None:  # multipart/form-data, one part per file
            boundary = uuid.uuid4().hex
            chunks = []
            for name, (filename, content) in files.items():
                chunks += [
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n".encode(),
                    content,
                    b"\r\n",
                ]
            data = b"".join([*chunks, f"--{boundary}--\r\n".encode()])
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read()
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{method} {path}: {err.code} {err.read()[:500]!r}\n{self.log_tail(15)}") from None
        return json.loads(text) if text else None


def decode_with_label_studio(python: Path, rles: list[list[int]], shape: tuple[int, int]) -> list[np.ndarray]:
    """Brush RLEs decoded by Label Studio's own converter, in its environment."""
    script = (
        "import sys, json, base64, numpy as np\n"
        "from label_studio_sdk.converter.brush import decode_rle\n"
        "h, w, rles = json.load(sys.stdin)\n"
        "out = [base64.b64encode(np.packbits(decode_rle(r).reshape(h, w, 4)[:, :, 3] > 0)).decode() for r in rles]\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps([*shape, rles]),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count = shape[0] * shape[1]
    return [
        np.unpackbits(np.frombuffer(base64.b64decode(m), np.uint8))[:count].reshape(shape).astype(bool)
        for m in json.loads(done.stdout)
    ]


def keypoint(x: int, y: int, positive: bool, width: int, height: int) -> dict:
    """A smart keypoint at pixel (x, y) as the editor serialises it (percent of the image size)."""
    return {
        "id": uuid.uuid4().hex[:10],
        "from_name": "tag2",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "is_positive": positive,
        "value": {"x": (x + 0.5) * 100 / width, "y": (y + 0.5) * 100 / height, "width": 0.5, "keypointlabels": ["Cat"]},
    }


# ---------------------------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


@pytest.fixture(scope="module")
def runtime(export: Path):
    from interformer_edge.runtime import Decoder, Encoder

    return Encoder(export, threads=2), Decoder(export, threads=2)


def test_label_studio_end_to_end(export: Path, runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from interformer_edge.annotate.guard import AccessPolicy
    from interformer_edge.annotate.server import build_app
    from interformer_edge.annotate.service import Annotator, Settings

    caplog.set_level(logging.INFO, logger="interformer_edge.annotate")
    python = tool_python("label-studio")
    started = time.monotonic()
    data = tmp_path / "ls-data"
    shutil.copytree(python.parent.parent / tool_envs().LABEL_STUDIO_TEMPLATE, data)  # sqlite, migrated
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTOS_DIR / "coffee.jpg", photos / "coffee.jpg")
    upload = (PHOTOS_DIR / "chelsea.jpg").read_bytes()

    studio = LabelStudio(python, data)
    try:
        studio.wait()
        pat = studio.personal_access_token()
        assert len(pat.split(".")) == 3  # a JWT: Label Studio 1.23's default kind of token
        studio.use(pat)
        project = studio.call("POST", "/api/projects", {"title": "cats", "label_config": LS_CONFIG})["id"]
        studio.call("POST", f"/api/projects/{project}/import", files={"file": ("chelsea.jpg", upload)})
        served = [{"data": {"image": "coffee.jpg"}}, {"data": {"image": "/data/upload/999/deleted.jpg"}}]
        studio.call("POST", f"/api/projects/{project}/import", served)
        listed = studio.call("GET", f"/api/tasks?project={project}&page_size=10")
        tasks = {t["data"]["image"].rsplit("/", 1)[-1]: t for t in listed.get("tasks", listed)}
        uploaded = next(t for name, t in tasks.items() if name.endswith("chelsea.jpg"))
        assert uploaded["data"]["image"].startswith("/data/upload/")  # downloaded from Label Studio, with the PAT

        annotator = Annotator(
            Settings(
                images=photos,
                model=export,
                out=tmp_path / "out",
                threads=2,
                prefetch=0,
                label_studio_url=studio.url,
                label_studio_token=pat,
            )
        )
        with LiveServer(build_app(annotator, policy=AccessPolicy(token=OUR_TOKEN))) as ours:
            backend = {
                "project": project,
                "url": ours,
                "title": "InterFormer",
                "is_interactive": True,
                "auth_method": "BASIC_AUTH",
                "basic_auth_user": "label-studio",
                "basic_auth_pass": OUR_TOKEN,
            }
            ml = studio.call("POST", "/api/ml", backend)["id"]

            def interactive(task: dict, points: list[dict]) -> dict:
                body = {"task": task["id"], "context": {"result": points}}
                return studio.call("POST", f"/api/ml/{ml}/interactive-annotating", body)

            # the editor: one keypoint, then a negative one (the replayed session: one decoder run more)
            one = [keypoint(222, 180, True, 451, 300)]
            two = [*one, keypoint(45, 30, False, 451, 300)]
            answers = [interactive(uploaded, one), interactive(uploaded, two)]
            coffee = [keypoint(250, 170, True, 512, 341)]
            answers.append(interactive(tasks["coffee.jpg"], coffee))
            results = [a["data"]["result"][0] for a in answers]
            assert all((r["type"], r["value"]["brushlabels"]) == ("brushlabels", ["Cat"]) for r in results)
            masks = decode_with_label_studio(python, [r["value"]["rle"] for r in results[:2]], (300, 451))
            masks += decode_with_label_studio(python, [results[2]["value"]["rle"]], (341, 512))
            rgb = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB"))
            expected = [
                runtime_mask(runtime, rgb, [(222, 180, True)]),
                runtime_mask(runtime, rgb, [(222, 180, True), (45, 30, False)]),
                runtime_mask(runtime, photos / "coffee.jpg", [(250, 170, True)]),
            ]
            ious = [iou(m, e) for m, e in zip(masks, expected, strict=True)]
            print(f"\nLabel Studio brush masks vs the runtime, IoU: {', '.join(f'{v:.4f}' for v in ious)}")
            assert all(v >= 0.999 for v in ious) and expected[0].any() and not np.array_equal(*expected[:2])

            # Submit: Label Studio posts ANNOTATION_CREATED to <backend>/webhook. Its webhook carries no
            # credentials, so (as docs/annotate.md says) the token goes into the webhook's headers.
            hooks = studio.call("GET", f"/api/webhooks?project={project}")
            hook = next(h for h in hooks if h["url"].rstrip("/").endswith("/webhook"))
            studio.call("PATCH", f"/api/webhooks/{hook['id']}", {"headers": {"Authorization": f"Token {OUR_TOKEN}"}})
            annotation = {"result": [*two, results[1]], "lead_time": 2.0}
            studio.call("POST", f"/api/tasks/{uploaded['id']}/annotations", annotation)
            deadline = time.monotonic() + 20
            while not annotator.label_studio.webhook_actions["ANNOTATION_CREATED"]:
                assert time.monotonic() < deadline, f"no ANNOTATION_CREATED at /webhook\n{studio.log_tail(15)}"
                time.sleep(0.2)

            # "Retrieve predictions" (no keypoints in the request): the saved keypoints' mask, or an empty one
            selected = {"selectedItems": {"all": False, "included": [uploaded["id"], tasks["coffee.jpg"]["id"]]}}
            studio.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}", selected)
            predicted = studio.call("GET", f"/api/predictions?task={uploaded['id']}")
            assert [p["result"][0]["value"]["rle"] for p in predicted] == [results[1]["value"]["rle"]]
            assert [p["result"] for p in studio.call("GET", f"/api/predictions?task={tasks['coffee.jpg']['id']}")] == [
                []
            ]

            # an image Label Studio cannot give: it reports our 502 by its status line only (see label_studio.py)
            failed = interactive(tasks["deleted.jpg"], [keypoint(10, 10, True, 100, 100)])
            assert "data" not in failed and "502" in failed["errors"][0]
            assert any("cannot download the task image" in r.getMessage() for r in caplog.records)
    finally:
        studio.stop()
    print(f"Label Studio end to end: {time.monotonic() - started:.1f} s (start, setup, 5 predictions, submit)")


# --------------------------------------------------------------------------- the token exchange, forced


class _StandIn(BaseHTTPRequestHandler):
    """Label Studio's token refresh and upload routes: access tokens that expire after ``lifetime`` seconds
    and can be revoked; counts the exchanges."""

    refresh_token = ""
    lifetime = 60.0
    valid: ClassVar[set[str]] = set()
    exchanges = 0
    payload = b""

    @classmethod
    def jwt(cls, claims: dict) -> str:
        def part(value: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/api/token/refresh/" or body.get("refresh") != self.refresh_token:
            self.send_response(401)
            self.end_headers()
            return
        type(self).exchanges += 1
        access = self.jwt({"token_type": "access", "exp": time.time() + self.lifetime, "jti": uuid.uuid4().hex})
        self.valid.add(access)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"access": access}).encode())

    def do_GET(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        self.send_response(200 if scheme == "Bearer" and token in self.valid else 401)
        self.end_headers()
        if scheme == "Bearer" and token in self.valid:
            self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


def test_personal_access_token_is_exchanged_and_renewed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interformer_edge.annotate.errors import RequestError
    from interformer_edge.annotate.label_studio import ACCESS, LEGACY, PERSONAL, LabelStudioClient, token_kind

    _StandIn.refresh_token = _StandIn.jwt({"token_type": "refresh", "exp": time.time() + 3600, "user_id": 1})
    assert token_kind(_StandIn.refresh_token) == PERSONAL
    assert token_kind(_StandIn.jwt({"token_type": "access"})) == ACCESS
    assert token_kind("0123456789abcdef0123456789abcdef01234567") == LEGACY  # Django REST framework's tokens
    assert token_kind("a.b.c") == LEGACY and token_kind("x" * 20 + "." + "y" * 20 + ".z") == LEGACY  # not JSON
    _StandIn.payload = b"image bytes"
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{stand_in.server_port}"
        client = LabelStudioClient(url, _StandIn.refresh_token, 1 << 20)
        assert client.fetch("/data/upload/1/a.jpg") == b"image bytes"
        assert client.fetch("/data/upload/1/a.jpg") == b"image bytes" and _StandIn.exchanges == 1  # reused
        _StandIn.valid.clear()  # revoked early: a 401, one new exchange, the download retried
        assert client.fetch("/data/upload/1/a.jpg") == b"image bytes" and _StandIn.exchanges == 2
        _StandIn.lifetime = 10.0  # tokens that expire inside the refresh margin...
        _StandIn.valid.clear()
        client.fetch("/data/upload/1/a.jpg")  # (the 401 again: exchange 3)
        client.fetch("/data/upload/1/a.jpg")  # ...are exchanged again before use, without a 401 first
        assert _StandIn.exchanges == 4
        with pytest.raises(RequestError, match="refused the Personal Access Token") as refused:
            LabelStudioClient(url, _StandIn.jwt({"token_type": "refresh"}), 1 << 20).fetch("/data/upload/1/a.jpg")
        assert refused.value.status == 502
        # A library run earlier in this process (logging.config.dictConfig with its default
        # disable_existing_loggers) may have disabled or quietened the package's logger: undo that here.
        monkeypatch.setattr(logging.getLogger("interformer_edge.annotate"), "disabled", False)
        legacy = LabelStudioClient(url, "0123456789abcdef0123456789abcdef01234567", 1 << 20)
        with (
            caplog.at_level(logging.WARNING, logger="interformer_edge.annotate"),
            pytest.raises(RequestError, match="legacy token"),
        ):
            legacy.fetch("/data/upload/1/a.jpg")
        assert any("refused the legacy token" in r.getMessage() for r in caplog.records)
    finally:
        stand_in.shutdown()
