"""interformer-annotate as a hostile client sees it: each way in that a review found open is tried again.

Every refused request must leave the output folder byte-for-byte as it was. The requests are sent as
the attacker would send them: a page on another origin (its ``Origin`` and ``Sec-Fetch-Site`` headers,
a ``text/plain`` body that needs no CORS preflight), a rebound DNS name (another ``Host``), a client
that rewrites Label Studio's address, crafted images, huge point lists and a client that hangs up.

The review's table, row by row, and where each is tried (the rest of this module unless named):

=====================================================  =====================================================
another origin posts text/plain to /api/save           test_another_origin_cannot_change_saved_work
/setup redirects Label Studio downloads and the key    test_annotate_hostile_requests.py (setup_cannot_point...)
OpenVINO: concurrent sessions, CVAT beside clicks      test_annotate_concurrency.py (16 annotators + tools)
two tabs save the same image                           test_annotate_saving.py, test_annotate_browser.py
the server restarts under an open tab                  test_annotate_browser.py (sessions re-created)
disk full during a save                                test_annotate_saving.py (nothing changes)
a link out of the image folder                         test_annotate_hostile_requests.py (links_out_of...)
any Host header (DNS rebinding)                        test_a_rebound_host_name_is_refused
13000x13000 PNG, 400 points, the client leaves         test_annotate_hostile_requests.py (malformed_and_oversized...,
                                                       work_stops_when_the_client_hangs_up)
--host 0.0.0.0 without a token                         test_serving_the_network_prints_a_token_link_and_requires_it,
                                                       test_token_is_needed_everywhere_but_the_page_shell
deep JSON, Label Studio "data": "x", is_positive text  test_annotate_hostile_requests.py (malformed_and_oversized...)
the page's label box and unsaved work on reload        test_annotate_browser.py
=====================================================  =====================================================
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from live_server import free_port

from interformer_edge.annotate.guard import TOKEN_COOKIE, AccessPolicy, served_hosts
from interformer_edge.annotate.service import Annotator, Settings

pytestmark = pytest.mark.bundled_model

LOCAL = "http://127.0.0.1:8000"
EVIL = "http://evil.example"
LS_CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image"><Label value="Cat"/>'
    '</BrushLabels><KeyPointLabels name="kp" toName="image" smart="true"><Label value="Cat"/></KeyPointLabels></View>'
)


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


def client_for(annotator: Annotator, policy: AccessPolicy | None = None):
    from starlette.testclient import TestClient

    from interformer_edge.annotate.server import build_app

    return TestClient(build_app(annotator, policy=policy), base_url=LOCAL, follow_redirects=False)


def annotator_for(export: Path, photos: Path, out: Path, **options: object) -> Annotator:
    return Annotator(Settings(images=photos, model=export, out=out, threads=1, prefetch=0, **options))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def one_line_error(response) -> str:
    error = response.json()["error"]
    assert error and "\n" not in error and "Traceback" not in error, error
    return error


def keypoint(x_pct: float, y_pct: float, positive: object, width: int = 451, height: int = 300) -> dict:
    return {
        "type": "keypointlabels",
        "original_width": width,
        "original_height": height,
        "is_positive": positive,
        "value": {"x": x_pct, "y": y_pct, "width": 0.5, "keypointlabels": ["Cat"]},
    }


def predict_body(image: object, points: list[dict]) -> dict:
    return {"tasks": [{"id": 1, "data": image}], "label_config": LS_CONFIG, "params": {"context": {"result": points}}}


def save_one_object(client, image: str = "chelsea.jpg") -> None:
    """A legitimate save through the page's API, so that the refused requests have something to destroy."""
    opened = client.post("/api/open", json={"image": image}).json()
    sid = client.post("/api/sessions", json={"image": image, "label": "cat"}).json()["session"]
    assert client.post(f"/api/sessions/{sid}/click", json={"x": 220, "y": 150, "positive": True}).status_code == 200
    saved = client.post(
        "/api/save",
        json={"image": image, "objects": [{"session": sid, "label": "cat"}], "revision": opened.get("revision", 0)},
    )
    assert saved.status_code == 200, saved.text


# --------------------------------------------------------------------------- cross-site writes, rebinding


def test_another_origin_cannot_change_saved_work(export: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with client_for(annotator_for(export, photos, out)) as client:
        save_one_object(client)
        before = snapshot(out)
        assert before
        wipe = '{"image": "chelsea.jpg", "objects": [], "revision": 1}'
        attempts = [
            # fetch(..., {mode: "no-cors", method: "POST", body}) from another site: text/plain, no preflight
            ({"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403),
            # the same from a browser that sends no Sec-Fetch-* headers
            ({"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"}, 403),
            # another port of this machine is another origin too
            ({"Origin": "http://127.0.0.1:9999", "Content-Type": "application/json"}, 403),
            ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, 403),
            # a non-browser client sending a form or plain text
            ({"Content-Type": "text/plain"}, 415),
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({}, 415),
        ]
        for headers, status in attempts:
            response = client.post("/api/save", content=wipe.encode(), headers=headers)
            assert response.status_code == status, (headers, response.text)
            one_line_error(response)
        sid = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "x"}).json()["session"]
        gone = client.delete(f"/api/sessions/{sid}", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
        assert gone.status_code == 403
        assert snapshot(out) == before
        # the page itself (same origin) still saves
        same = client.post(
            "/api/save",
            content=wipe.encode(),
            headers={"Origin": LOCAL, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"},
        )
        assert same.status_code in (200, 409), same.text  # 409: the revision API refused a stale number


def test_a_rebound_host_name_is_refused(export: Path, photos: Path, tmp_path: Path) -> None:
    with client_for(annotator_for(export, photos, tmp_path / "out")) as client:
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]:8000"):
            response = client.get("/api/images", headers={"Host": host})
            assert response.status_code == 400, host
            assert "host name" in one_line_error(response)
            assert client.get("/files/chelsea.jpg", headers={"Host": host}).status_code == 400
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
            assert client.get("/api/images", headers={"Host": host}).status_code == 200, host


def test_served_host_names_of_a_network_server() -> None:
    names = served_hosts("0.0.0.0", ["annotate.example.org"])
    assert {"127.0.0.1", "localhost", "annotate.example.org", socket.gethostname().lower()} <= names
    assert "evil.example" not in names
    assert "evil.example" not in served_hosts("127.0.0.1")
    assert AccessPolicy(frozenset({"*"})).check_host({"host": "anything.example"}) == "anything.example"


# -------------------------------------------------------------------------------------------- the token


def test_token_is_needed_everywhere_but_the_page_shell(export: Path, photos: Path, tmp_path: Path) -> None:
    token = "correct-horse-battery-staple"
    policy = AccessPolicy(served_hosts("127.0.0.1"), token)
    with client_for(annotator_for(export, photos, tmp_path / "out"), policy) as client:
        assert client.get("/").status_code == 200  # the shell: it shows the user what is missing
        refused = [
            client.get("/api/images"),
            client.get("/files/chelsea.jpg"),
            client.post("/api/open", json={"image": "chelsea.jpg"}),
            client.post("/cvat/interactor", json={}),
            client.post("/predict", json={}),
            client.get("/health"),
            client.get("/api/images", headers={"Authorization": "Token wrong"}),
            client.get("/api/images", headers={"Cookie": f"{TOKEN_COOKIE}=wrong"}),
            client.get("/api/images", headers={"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}),
        ]
        for response in refused:
            assert response.status_code == 401, response.request.url
            assert "token" in one_line_error(response)
        accepted = [
            {"Authorization": f"Token {token}"},  # CVAT-style tools, curl
            {"Authorization": f"Bearer {token}"},
            {"Authorization": "Basic " + base64.b64encode(f"label-studio:{token}".encode()).decode()},  # Label Studio
            {"Token": token},  # X-AnyLabeling's remote server header
        ]
        for headers in accepted:
            assert client.get("/api/images", headers=headers).status_code == 200, headers
        assert client.get("/?token=wrong").status_code == 401
        link = client.get(f"/?token={token}")
        assert link.status_code == 303 and link.headers["location"] == "/"  # the token leaves the address bar
        kept = client.get(f"/?token={token}&decode=server")
        assert kept.headers["location"] == "/?decode=server"  # the page's other parameters stay
        cookie = link.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
        client.cookies.set(TOKEN_COOKIE, token)
        assert client.get("/api/images").status_code == 200
        assert client.post("/api/open", json={"image": "chelsea.jpg"}).status_code == 200


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    """HTTP status of a GET (the server may still be starting: connection refusals are retried for 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serving_the_network_prints_a_token_link_and_requires_it(export: Path, photos: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "INTERFORMER_ANNOTATE_TOKEN"}
    command = [sys.executable, "-m", "interformer_edge.annotate.cli", str(photos), "-m", str(export)]
    command += ["--host", "0.0.0.0", "--port", str(port), "--out", str(tmp_path / "out"), "--threads", "1"]
    command += ["--backend", "onnxruntime", "--variant", "fp32", "--compute", "f32"]  # no timing at start
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        printed = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line or server.poll() is None, "".join(printed)
            printed.append(line)
            if "?token=" in line:
                break
        found = re.search(r"\?token=([A-Za-z0-9_-]+)", "".join(printed))
        assert found, "".join(printed)
        token = found.group(1)
        assert len(token) >= 24
        url = f"http://127.0.0.1:{port}"
        assert status_of(f"{url}/api/images") == 401
        assert status_of(f"{url}/api/images", {"Authorization": f"Token {token}"}) == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
