"""Load test of ``interformer-annotate``: N simulated annotators clicking at once, on loopback.

Starts the server as a separate process (so the clients do not share its interpreter), opens every
image once (encoding is not what is measured), then for each N runs N threads; each opens a click
session on an image and sends ``--clicks`` clicks (positive, then alternating), one after the other
as a person would, each waiting for its answer. Reports per N: click round-trip p50 / p99, the server's
own decode time, requests that failed, and clicks lost (a reply whose click list is not exactly the
clicks sent so far).

    python scripts/annotate_load.py -m export/ assets/photos --annotators 1,4,16 --clicks 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port: int, method: str, path: str, body: object | None = None, timeout: float = 300.0) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_description() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = found.group(1) if found else model
        flags = set(re.findall(r"\b(avx512_vnni|avx_vnni|avx2|asimddp)\b", text))
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores; {' '.join(sorted(flags)) or 'no avx2/vnni/dotprod'})"


def annotator(port: int, image: dict, clicks: int, seed: int, results: dict) -> None:
    rng = random.Random(seed)
    latencies, decode, errors, lost = [], [], 0, 0
    status, reply = request(port, "POST", "/api/sessions", {"image": image["name"], "label": f"a{seed}"})
    if status != 200:
        results[seed] = ([], [], clicks + 1, 0)
        return
    session, sent = reply["session"], []
    for k in range(clicks):
        click = [rng.randrange(image["width"]), rng.randrange(image["height"]), k % 2 == 0]
        started = time.perf_counter()
        try:
            status, reply = request(
                port, "POST", f"/api/sessions/{session}/click", {"x": click[0], "y": click[1], "positive": click[2]}
            )
        except OSError:
            status, reply = 0, {}
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors += 1
            continue
        sent.append(click)
        decode.append(reply["decode_ms"])
        lost += reply["clicks"] != sent
    request(port, "DELETE", f"/api/sessions/{session}")
    results[seed] = (latencies, decode, errors, lost)


def decoder_line(log_path: Path) -> str:
    """The server's own 'decoder: ...' start line (what it chose and, under auto, each candidate's time)."""
    lines = [line for line in log_path.read_text().splitlines() if line.startswith("decoder: ")]
    return lines[0] if lines else "decoder: (not reported)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder of images to serve")
    parser.add_argument("-m", "--model", type=Path, required=True, help="export folder")
    parser.add_argument("--annotators", default="1,4,16", help="comma-separated N to run (default 1,4,16)")
    parser.add_argument("--clicks", type=int, default=8, help="clicks per annotator (default 8)")
    parser.add_argument("--threads", type=int, default=0, help="server --threads (0: all cores)")
    parser.add_argument("--click-workers", type=int, default=1, help="server --click-workers")
    parser.add_argument("--backend", default="auto", help="server --backend (default auto)")
    parser.add_argument("--variant", default="auto", help="server --variant (default auto)")
    parser.add_argument("--compute", default="auto", help="server --compute (default auto)")
    parser.add_argument(
        "--shapes",
        choices=("auto", "static", "dynamic"),
        default="auto",
        help="server --static-shapes / --dynamic-shapes (default auto: the server's own rule)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    counts = [int(n) for n in args.annotators.split(",")]

    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "interformer_edge.annotate.cli",
            str(args.images),
            "-m",
            str(args.model),
            "--port",
            str(port),
            "--out",
            out,
            "--threads",
            str(args.threads),
            "--prefetch",
            "0",
            "--click-workers",
            str(args.click_workers),
            "--backend",
            args.backend,
            "--variant",
            args.variant,
            "--compute",
            args.compute,
            *([] if args.shapes == "auto" else [f"--{args.shapes}-shapes"]),
            "--max-sessions",
            str(max(64, 2 * max(counts))),
        ]
        log_path = Path(out) / "server.log"  # a file, not a pipe: a full pipe would stall the server
        log_file = log_path.open("w")
        server = subprocess.Popen(command, stdout=log_file, stderr=log_file)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if request(port, "GET", "/health", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            listing = request(port, "GET", "/api/images")[1]["images"]
            images = []
            for entry in listing:  # encode everything first: the clicks are what is measured
                status, opened = request(port, "POST", "/api/open", {"image": entry["name"]})
                if status == 200:
                    images.append(opened)
            print(
                f"CPU: {cpu_description()}; load average before: {os.getloadavg()[0]:.2f}; "
                f"{len(images)} images; {args.clicks} clicks per annotator; click workers {args.click_workers}\n"
                f"{decoder_line(log_path)}"
            )
            print(
                f"{'N':>3} {'clicks':>6} {'p50 ms':>8} {'p99 ms':>8} {'decode p50':>10} {'errors':>6} {'lost':>4} "
                f"{'wall s':>6}"
            )
            rows = []
            for n in counts:
                results: dict = {}
                threads = [
                    threading.Thread(target=annotator, args=(port, images[i % len(images)], args.clicks, i, results))
                    for i in range(n)
                ]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                wall = time.perf_counter() - started
                latencies = [v * 1000 for r in results.values() for v in r[0]]
                decode = [v for r in results.values() for v in r[1]]
                row = {
                    "annotators": n,
                    "clicks": len(latencies),
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                    "decode_p50_ms": percentile(decode, 50),
                    "errors": sum(r[2] for r in results.values()),
                    "lost": sum(r[3] for r in results.values()),
                    "wall_s": wall,
                    "load_average": os.getloadavg()[0],
                }
                rows.append(row)
                print(
                    f"{n:>3} {row['clicks']:>6} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} "
                    f"{row['decode_p50_ms']:>10.0f} {row['errors']:>6} {row['lost']:>4} {wall:>6.1f}"
                )
            print(f"load average after: {os.getloadavg()[0]:.2f}")
            if args.json:
                args.json.write_text(json.dumps({"cpu": cpu_description(), "rows": rows}, indent=1) + "\n")
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log_file.close()


if __name__ == "__main__":
    main()
