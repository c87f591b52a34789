"""interformer-annotate without a model: the mask encodings and the feature cache.

The RLE encodings are checked against hand-worked values and against decoders written here from the
format descriptions (COCO's maskApi.c, Label Studio's brush.py / thi.ng rle-pack), not the package's.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from annotation_decoders import brush_to_mask, coco_string_to_counts, coco_to_mask
from PIL import Image

from interformer_edge.annotate.feature_cache import FeatureCache
from interformer_edge.annotate.rle import brush_rle, coco_counts, coco_rle, compress_counts, decode_coco_rle
from interformer_edge.core.spec import FEATURE_NAMES
from interformer_edge.runtime.features import FeatureMeta, ImageFeatures

# ----------------------------------------------------------------------------------- encodings


def test_coco_rle_hand_worked() -> None:
    mask = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)  # column-major: 0 1 0 | 1 1 0
    assert coco_counts(mask) == [1, 1, 1, 2, 1]
    # counts 1, 1, 1, then deltas 2-1=1 and 1-1=0: one character each, '0' + value
    assert coco_rle(mask) == {"size": [3, 2], "counts": "11110"}
    full = np.ones((10, 10), dtype=bool)  # counts [0, 100]: 100 = 3*32 + 4 -> '0'+(4|0x20)='T', then '3'
    assert coco_rle(full)["counts"] == "0T3"
    # a negative delta: 1 - 5 = -4 -> low 5 bits 0b11100 (sign bit set), nothing more -> chr(48 + 28) = 'L'
    assert compress_counts([0, 5, 3, 1]) == "05" + "3" + "L"
    assert coco_string_to_counts("05" + "3" + "L") == [0, 5, 3, 1]


def test_coco_rle_matches_an_independent_decoder() -> None:
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 5), (40, 33)):
        mask = rng.random(shape) < 0.3
        mask[: shape[0] // 2, : shape[1] // 2] = True  # long runs too
        rle = coco_rle(mask)
        assert np.array_equal(coco_to_mask(rle), mask)
        assert np.array_equal(decode_coco_rle(rle), mask)


def test_brush_rle_hand_worked() -> None:
    # one set pixel -> 4 values of 255: header (32-bit count 4, word size 8-1, classes 3,4,8,16 minus 1),
    # then one repeat of class 0: '1', '00', length 4-1 in 3 bits, value 255; zero-padded to whole bytes
    bits = f"{4:032b}" + "00111" + "0010" + "0011" + "0111" + "1111" + "1" + "00" + "011" + "11111111"
    bits += "0" * (-len(bits) % 8)
    assert brush_rle(np.ones((1, 1), dtype=bool)) == [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def test_brush_rle_matches_an_independent_decoder() -> None:
    rng = np.random.default_rng(1)
    empty = np.zeros((200, 200), dtype=bool)  # 160000 equal values: runs beyond the 16-bit class
    assert np.array_equal(brush_to_mask(brush_rle(empty), 200, 200), empty)
    for shape in ((3, 4), (37, 23)):
        mask = rng.random(shape) < 0.5
        mask[5:, 3:] = True
        assert np.array_equal(brush_to_mask(brush_rle(mask), *shape), mask)


# ------------------------------------------------------------------------------------ feature cache


def fake_features(name: str, values: int = 1000) -> ImageFeatures:
    """Features of ``4 * values * 4`` bytes (float32) for the cache's bookkeeping; no model involved."""
    meta = FeatureMeta(
        model_id="m",
        image_name=name,
        original_size=(8, 8),
        encoded_size=(8, 8),
        padded_size=(32, 32),
        scale=1.0,
        dtype="float32",
    )
    return ImageFeatures({n: np.zeros((1, 1, 1, values), dtype=np.float32) for n in FEATURE_NAMES}, meta)


def test_feature_cache_order_prefetch_and_memory_bound() -> None:
    loaded: list[str] = []
    started, gate = threading.Event(), threading.Event()

    def loader(name: str):
        def load() -> tuple[ImageFeatures, str]:
            loaded.append(name)
            if name == "first":  # holds the encoder thread while the queue is set up
                started.set()
                gate.wait(10)
            return fake_features(name), "encoded"

        return load

    one = 4 * 1000 * 4  # bytes of one fake image
    cache = FeatureCache(budget_bytes=2 * one, prefetch_depth=2)
    try:
        first = cache.request("first", loader("first"))
        assert started.wait(10)
        cache.prefetch([(n, loader(n)) for n in ("p1", "p2", "p3")])  # depth 2: p3 is not queued
        cache.prefetch([(n, loader(n)) for n in ("q1", "q2")])  # the annotator moved on: p1, p2 dropped
        urgent = cache.request("urgent", loader("urgent"))  # jumps ahead of the prefetches
        q2 = cache.request("q2", loader("q2"))  # asked for: moves to the front too
        gate.set()
        first.result(10), urgent.result(10), q2.result(10)
        cache.get("q1", loader("q1"))
        assert loaded == ["first", "q2", "urgent", "q1"]
        assert len(cache) == 2 and cache.nbytes <= 2 * one  # least recently used went first
        assert cache.cached("q1") and cache.cached("urgent") and not cache.cached("first")
        assert cache.get("q1", loader("q1")).source == "encoded" and loaded.count("q1") == 1  # a hit, not a reload
    finally:
        cache.close()


# ---------------------------------------------------------------------------------------- the command


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interformer_edge.annotate.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_without_the_serve_extra_says_so_in_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['interformer-annotate', sys.argv[1], '-m', 'x']; "
        "from interformer_edge.annotate.cli import app; app()"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'interformer-edge[serve]'" in lines[0], result.stderr


def test_cli_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="the serve extra (absent from the lean install)")
    store = tmp_path / "store"
    store.mkdir()
    (store / "cat.jpg.npz").write_bytes(b"features without their image")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    cases = [
        (("nowhere/", "-m", "export/"), "does not exist"),
        ((str(store), "-m", "export/"), "--features"),  # a store alone has no pixels to show
        ((str(photos), "-m", str(tmp_path / "no-export")), "manifest"),
        ((str(photos), "-m", "export/", "--page-variant", "bf16"), "--page-variant must be one of auto, fp32, int8"),
        ((str(photos), "-m", "export/", "--decode", "cloud"), "--decode must be one of browser, server"),
    ]
    for args, expected in cases:
        result = run_cli(*args)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (photos / "annotations").exists()  # nothing created for a run that never started
    help_text = run_cli("--help").stdout
    assert "0.0.0.0" in help_text and "127.0.0.1" in help_text


def test_the_annotator_imports_the_runtime_only() -> None:
    """It runs on the device: the runtime, never torch, the model port, the exporter or the quantizer."""
    pytest.importorskip("starlette", reason="the serve extra (absent from the lean install)")
    code = (
        "import sys, interformer_edge.annotate.cli, interformer_edge.annotate.server; "
        "print(' '.join(m for m in ('torch', 'interformer_edge.models', 'interformer_edge.export', "
        "'interformer_edge.quantize', 'interformer_edge.runtime.session') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["interformer_edge.runtime.session"], done.stdout
