"""Tiny onnxruntime timing of an exported encoder/decoder pair (stand-in until ``interformer-bench`` exists).

Usage::

    python bench_onnx.py EXPORT_DIR [--size 320] [--decoder-runs 5] [--threads N] [--label TEXT]

Loads ``encoder.onnx`` and ``decoder.onnx`` from ``EXPORT_DIR``, builds inputs from the graphs'
declared input specs (symbolic ``H``/``W``/``H/4``... become the requested size, other unknown dims 1),
runs the encoder once and the decoder ``--decoder-runs`` times (feeding it the encoder's outputs
where the names match, random values otherwise) and prints wall-clock timings.

Only numpy + onnxruntime: it runs in the lean venv.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def resolve_dim(dim: object, height: int, width: int) -> int:
    if isinstance(dim, int) and dim > 0:
        return dim
    if isinstance(dim, str):
        match = re.fullmatch(r"\s*([HW])\s*(?:/\s*(\d+))?\s*", dim)
        if match:
            side = height if match.group(1) == "H" else width
            return side // int(match.group(2) or 1)
    return 1  # batch and any other unnamed dim


def make_input(arg: ort.NodeArg, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    dtype = DTYPES.get(arg.type)
    if dtype is None:
        raise SystemExit(f"bench: input {arg.name!r} has unsupported type {arg.type}")
    shape = [resolve_dim(d, height, width) for d in arg.shape]
    if arg.name == "roi":  # (1, 4) left, up, right, bottom: the whole image means no zoom-in
        return np.array([[0, 0, width, height]], dtype=dtype).reshape(shape)
    if arg.name == "ref_label":  # label codes 0..4 (background .. foreground)
        return rng.integers(0, 5, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.integers(0, 5, size=shape).astype(dtype)


def load(path: Path, threads: int) -> tuple[ort.InferenceSession, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - start


def describe(session: ort.InferenceSession) -> str:
    return ", ".join(f"{a.name}{list(a.shape)}:{a.type[7:-1]}" for a in session.get_inputs())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--size", type=int, default=320, help="image height and width (default 320)")
    parser.add_argument("--decoder-runs", type=int, default=5, help="timed decoder runs (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads")
    parser.add_argument("--label", default="EMULATED (qemu) — not Raspberry Pi figures")
    args = parser.parse_args()

    paths = {role: args.export_dir / f"{role}.onnx" for role in ("encoder", "decoder")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        print(f"bench: missing {', '.join(missing)}", file=sys.stderr)
        return 2

    label = args.label
    print(f"== {label} ==")
    print(
        f"machine {platform.machine()}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
        f"threads {args.threads}, size {args.size}x{args.size}, QEMU_CPU={os.environ.get('QEMU_CPU', '-')}"
    )
    rng = np.random.default_rng(0)
    height = width = args.size

    encoder, encoder_load = load(paths["encoder"], args.threads)
    decoder, decoder_load = load(paths["decoder"], args.threads)
    print(f"encoder inputs: {describe(encoder)}")
    print(f"decoder inputs: {describe(decoder)}")
    print(f"load: encoder {encoder_load:.2f} s, decoder {decoder_load:.2f} s  [{label}]")

    feeds = {a.name: make_input(a, height, width, rng) for a in encoder.get_inputs()}
    start = time.perf_counter()
    outputs = encoder.run(None, feeds)
    encode_s = time.perf_counter() - start
    produced = {a.name: value for a, value in zip(encoder.get_outputs(), outputs, strict=True)}
    print(f"encoder: 1 run {encode_s * 1000:.0f} ms  [{label}]")

    decoder_feeds = {
        a.name: produced[a.name] if a.name in produced else make_input(a, height, width, rng)
        for a in decoder.get_inputs()
    }
    times = []
    for _ in range(args.decoder_runs):
        start = time.perf_counter()
        (logits, *_) = decoder.run(None, decoder_feeds)
        times.append(time.perf_counter() - start)
    if not np.isfinite(logits).all():
        print("bench: decoder produced non-finite logits", file=sys.stderr)
        return 1
    ms = [t * 1000 for t in times]
    print(
        f"decoder: {len(ms)} runs, first {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, "
        f"min {min(ms):.0f} ms, output {list(logits.shape)}  [{label}]"
    )
    print(
        f"BENCH_SUMMARY encoder_ms={encode_s * 1000:.0f} decoder_median_ms={statistics.median(ms):.0f} "
        f"decoder_min_ms={min(ms):.0f} size={args.size} threads={args.threads} machine={platform.machine()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
