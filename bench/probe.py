"""Memory probe: a fresh process that loads one configuration, encodes one photo and serves clicks,
then prints its peak RSS (and RSS after each stage) as one JSON line.

    python -m interformer_edge.bench.probe EXPORT_DIR --backend onnxruntime --variant int8 --compute f32 \\
        --threads 2 --size 512x512 --clicks 20

A fresh process per configuration because peak RSS never goes down: measured inside the benchmark
process it would be the maximum over everything run so far. It imports as little as possible
(argparse, not typer/rich) so the baseline is the interpreter plus numpy and the backend.
``--backend pytorch --checkpoint PATH`` measures the eager model the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from interformer_edge.core.peak_memory import peak_rss_bytes
from interformer_edge.core.sizes import parse_size

PROG = "python -m interformer_edge.bench.probe"


def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _runtime_session(args: argparse.Namespace, rgb: Any, facts: dict[str, Any]) -> list[float]:
    from interformer_edge.runtime.export import RuntimeSettings, open_export
    from interformer_edge.runtime.session import ClickSession

    from .inputs import click_points

    start = time.perf_counter()
    # verify_hashes=False: the benchmark hashed the export once already; hashing here would only add time.
    export = open_export(args.export, verify_hashes=False)
    settings = RuntimeSettings(args.backend, args.threads, args.compute)
    encoder = export.encoder(settings, max_side=0)
    decoder = export.decoder(settings, variant=args.variant)
    facts["load_s"] = time.perf_counter() - start
    facts["rss_after_load_bytes"] = current_rss_bytes()
    start = time.perf_counter()
    features = encoder.encode(rgb)
    facts["encode_s"] = time.perf_counter() - start
    facts["rss_after_encode_bytes"] = current_rss_bytes()
    session = ClickSession(decoder, features)
    times = []
    for y, x, positive in click_points(*rgb.shape[:2], args.clicks):
        start = time.perf_counter()
        session.add_click(y, x, positive)
        times.append(time.perf_counter() - start)
    return times


def _torch_session(args: argparse.Namespace, rgb: Any, facts: dict[str, Any]) -> list[float]:
    import numpy as np

    from interformer_edge.core.clicks import Click, add_click, initial_ref_label, update_ref_label_with_prediction
    from interformer_edge.core.evaluation import zoom_roi_padded
    from interformer_edge.core.spec import CLICK_INNER_RADIUS, CLICK_OUTER_RADIUS, ZOOM_START_CLICK

    from .baseline import TorchBaseline
    from .inputs import click_points

    start = time.perf_counter()
    baseline = TorchBaseline(Path(args.checkpoint))
    baseline.set_threads(args.threads)
    facts["load_s"] = time.perf_counter() - start
    facts["rss_after_load_bytes"] = current_rss_bytes()
    start = time.perf_counter()
    predictor = baseline.predictor(rgb)
    facts["encode_s"] = time.perf_counter() - start
    facts["rss_after_encode_bytes"] = current_rss_bytes()
    ref = initial_ref_label(rgb.shape[:2])
    pred = np.zeros(rgb.shape[:2], dtype=bool)
    times = []
    for index, (y, x, positive) in enumerate(click_points(*rgb.shape[:2], args.clicks)):  # the session protocol
        start = time.perf_counter()
        ref = add_click(ref, Click(y, x, positive), CLICK_INNER_RADIUS, CLICK_OUTER_RADIUS)
        roi = zoom_roi_padded(pred, ref) if baseline.uses_roi and index >= ZOOM_START_CLICK else None
        pred = predictor(ref, roi)
        ref = update_ref_label_with_prediction(ref, pred)
        times.append(time.perf_counter() - start)
    return times


def probe(args: argparse.Namespace) -> dict[str, Any]:
    import numpy  # noqa: F401  (part of every configuration's baseline)

    from .inputs import bench_photo

    height, width = parse_size(args.size)
    rgb = bench_photo((height, width))
    facts: dict[str, Any] = {
        "backend": args.backend,
        "variant": args.variant,
        "compute": args.compute,
        "threads": args.threads,
        "size": f"{height}x{width}",
        "clicks": args.clicks,
        "rss_baseline_bytes": current_rss_bytes(),
    }
    run = _torch_session if args.backend == "pytorch" else _runtime_session
    times = run(args, rgb, facts)
    facts["rss_after_clicks_bytes"] = current_rss_bytes()
    facts["peak_rss_bytes"] = peak_rss_bytes()
    facts["click_ms_mean"] = 1000.0 * sum(times) / max(1, len(times))
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="export folder")
    parser.add_argument("--backend", required=True, choices=("onnxruntime", "openvino", "pytorch"))
    parser.add_argument("--variant", default="fp32", help="decoder variant of the export (fp32, int8)")
    parser.add_argument("--compute", default="f32", help="OpenVINO's type for float layers (f32, bf16, f16, device)")
    parser.add_argument("--hint", help=argparse.SUPPRESS)  # --compute's old name
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", default="512x512", help="HxW the photo is resized to")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--checkpoint", help="the checkpoint, for --backend pytorch")
    args = parser.parse_args(argv)
    if args.hint is not None:
        print(f"{PROG}: warning: --hint is deprecated, use --compute", file=sys.stderr, flush=True)
        args.compute = args.hint
    print(json.dumps(probe(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
