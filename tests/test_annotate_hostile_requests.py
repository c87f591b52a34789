"""interformer-annotate against a hostile client, part two: where the server fetches from, which files it serves,
and how much work one request may cost (see test_annotate_hostile.py for the review's table, row by row)."""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from live_server import annotator_server
from test_annotate_hostile import (
    annotator_for,
    client_for,
    keypoint,
    one_line_error,
    predict_body,
    save_one_object,
    snapshot,
)

from interformer_edge.annotate.limits import MAX_CLICKS_PER_OBJECT

pytestmark = pytest.mark.bundled_model


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


# ---------------------------------------------------------------------------------- Label Studio's URL


class _Recorder(BaseHTTPRequestHandler):
    """A listener that records what reaches it; answers with ``answer`` (status, headers, body)."""

    seen: list[tuple[str, str | None]]
    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        status, headers, body = self.answer
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def listener(answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")) -> tuple[ThreadingHTTPServer, list]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_setup_cannot_point_downloads_and_the_token_elsewhere(export: Path, photos: Path, tmp_path: Path) -> None:
    attacker, stolen = listener((200, {"Content-Type": "image/jpeg"}, (photos / "coffee.jpg").read_bytes()))
    attacker_url = f"http://127.0.0.1:{attacker.server_port}"
    # the real Label Studio answers every download with a redirect to the attacker
    real, asked = listener((302, {"Location": f"{attacker_url}/x.jpg"}, b""))
    real_url = f"http://127.0.0.1:{real.server_port}"
    try:
        for configured in (None, real_url):
            annotator = annotator_for(
                export, photos, tmp_path / "out", label_studio_url=configured, label_studio_token="the-real-key"
            )
            with client_for(annotator) as client:
                setup = client.post("/setup", json={"hostname": attacker_url, "access_token": "evil", "project": "1"})
                assert setup.status_code == 200
                for reference in (
                    f"{attacker_url}/data/upload/1/cat.jpg",
                    "file:///etc/passwd",
                    "/data/upload/1/a.jpg",
                ):
                    response = client.post(
                        "/predict", json=predict_body({"image": reference}, [keypoint(50, 50, True)])
                    )
                    assert response.status_code in (404, 502), (reference, response.text)
                    one_line_error(response)
        assert stolen == []  # nothing, and no token, ever reached the attacker
        assert asked == [("/data/upload/1/a.jpg", "Token the-real-key")]  # only the configured Label Studio
    finally:
        attacker.shutdown()
        real.shutdown()
    with pytest.raises(Exception, match="http"):
        annotator_for(export, photos, tmp_path / "out2", label_studio_url="file:///")


# ------------------------------------------------------------------------------------------ the folder


def test_links_out_of_the_image_folder_are_not_served(export: Path, photos: Path, tmp_path: Path) -> None:
    (photos / "passwd.jpg").symlink_to("/etc/passwd")
    (photos / "alias.jpg").symlink_to(photos / "chelsea.jpg")  # a link inside the folder is fine
    with client_for(annotator_for(export, photos, tmp_path / "out")) as client:
        names = [i["name"] for i in client.get("/api/images").json()["images"]]
        assert names == ["alias.jpg", "chelsea.jpg", "coffee.jpg"]
        assert client.get("/files/passwd.jpg").status_code == 404
        assert client.get("/files/alias.jpg").content == (photos / "chelsea.jpg").read_bytes()
        # swapped for a link after the listing
        (photos / "coffee.jpg").unlink()
        (photos / "coffee.jpg").symlink_to("/etc/passwd")
        response = client.get("/files/coffee.jpg")
        assert response.status_code == 404 and b"root:" not in response.content
        assert client.post("/api/open", json={"image": "coffee.jpg"}).status_code == 404


# ----------------------------------------------------------------------------------- bounded requests


def png_header_only(width: int, height: int) -> bytes:
    """A PNG file that claims ``width x height`` (1-bit) and carries one empty data chunk: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def cvat(image: bytes, points: list[list[int]]) -> dict:
    return {"image": base64.b64encode(image).decode(), "pos_points": points, "neg_points": [], "threshold": 0.5}


def test_malformed_and_oversized_requests_are_one_line_4xx(export: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with client_for(annotator_for(export, photos, out, max_pixels=20_000_000)) as client:
        save_one_object(client)
        before = snapshot(out)
        deep = b"[" * 200_000 + b"]" * 200_000
        json_type = {"Content-Type": "application/json"}
        small = (photos / "coffee.jpg").read_bytes()
        too_many = [[1 + i % 300, 1 + i // 300] for i in range(400)]
        cases = [
            (client.post("/api/save", content=deep, headers=json_type), 400),
            (client.post("/predict", content=deep, headers=json_type), 400),
            (client.post("/cvat/interactor", json=cvat(png_header_only(13_000, 13_000), [[5, 5]])), 413),
            (client.post("/cvat/interactor", json=cvat(small, too_many)), 400),
            (client.post("/predict", json=predict_body("x", [keypoint(50, 50, True)])), 400),
            (client.post("/predict", json=predict_body({"image": "chelsea.jpg"}, [keypoint(50, 50, "false")])), 400),
            (client.post("/predict", json=predict_body({"image": "chelsea.jpg"}, [keypoint(50, 50, 0)])), 400),
            (
                client.post(
                    "/predict",
                    json=predict_body(
                        {"image": "chelsea.jpg"},
                        [keypoint(10 + i % 80, 10, True) for i in range(MAX_CLICKS_PER_OBJECT + 1)],
                    ),
                ),
                400,
            ),
        ]
        for response, status in cases:
            assert response.status_code == status, (response.request.url, response.text[:200])
            one_line_error(response)
        assert "13000x13000" in cases[2][0].json()["error"]
        assert snapshot(out) == before
        # a page session stops taking clicks at the limit, and says why
        sid = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "x"}).json()["session"]
        for k in range(MAX_CLICKS_PER_OBJECT):
            reply = client.post(f"/api/sessions/{sid}/click", json={"x": 10 + k, "y": 20, "positive": k % 2 == 0})
            assert reply.status_code == 200
        over = client.post(f"/api/sessions/{sid}/click", json={"x": 5, "y": 5, "positive": True})
        assert over.status_code == 409 and str(MAX_CLICKS_PER_OBJECT) in one_line_error(over)
        assert client.get("/api/images").status_code == 200  # and the server keeps serving


def test_work_stops_when_the_client_hangs_up(export: Path, photos: Path, tmp_path: Path) -> None:
    annotator = annotator_for(export, photos, tmp_path / "out")
    runs = []
    decoder_run = annotator.decoder.run

    def slow_run(*args: object, **kwargs: object):  # a slow device: each click takes a while
        runs.append(time.monotonic())
        time.sleep(0.05)
        return decoder_run(*args, **kwargs)

    annotator.decoder.run = slow_run
    points = [[20 + 6 * i, 40 + 3 * i] for i in range(MAX_CLICKS_PER_OBJECT)]
    body = b'{"image": "%s", "pos_points": %s, "neg_points": []}' % (
        base64.b64encode((photos / "coffee.jpg").read_bytes()),
        str(points).encode(),
    )
    server = annotator_server(annotator)
    port = server.port
    with server:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                b"POST /cvat/interactor HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            deadline = time.monotonic() + 60
            while len(runs) < 3:
                assert time.monotonic() < deadline, "the decoder never ran"
                time.sleep(0.02)
        at_hangup = len(runs)
        quiet_since, last = time.monotonic(), len(runs)
        while time.monotonic() - quiet_since < 1.0:  # wait until no decoder run for a second
            time.sleep(0.05)
            if len(runs) != last:
                quiet_since, last = time.monotonic(), len(runs)
    annotator.close()
    assert len(runs) < at_hangup + 10 < MAX_CLICKS_PER_OBJECT, (at_hangup, len(runs))
