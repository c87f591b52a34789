"""The page's click protocol (annotate/static/decode/clicks.mjs) against the Python one, bit for bit.

Python writes cases into a temporary folder: the core functions (click disks, merges, prediction updates,
zoom-in rois, bilinear resizes) on random inputs, and whole :class:`ClickSession` runs (clicks, undo past the
logits cache, reset; zoom-in on and off; images encoded at full size and downscaled, sizes that are not
multiples of 32) with a stand-in decoder that returns random smooth logits. ``node --test tests/js/`` replays
them with the JS port and asserts equal outputs: reference labels, rois, decoder inputs, masks at the photo's
size. Node also parses a feature payload written by the server's code and writes 1-bit PNG masks that PIL
reads back here.

Node is a test tool like chromium: a machine without it fails this test (it does not skip).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from interformer_edge.core.clicks import (
    Click,
    add_click,
    clicks_to_ref_label,
    merge_ref_labels,
    update_ref_label_with_prediction,
    zoom_roi,
)
from interformer_edge.core.evaluation import zoom_roi_padded
from interformer_edge.core.preprocess import fit_size, padded_shape, resize_bilinear
from interformer_edge.runtime.features import FeatureMeta, ImageFeatures
from interformer_edge.runtime.session import ClickSession

JS_TESTS = Path(__file__).parent / "js"
NODE_TIMEOUT_SECONDS = 300


def packed(array: np.ndarray) -> dict[str, Any]:
    """An array for the JS side: dtype, shape and its little-endian bytes in base64."""
    dtype = "uint8" if array.dtype == bool else array.dtype.name
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return {"dtype": dtype, "shape": list(array.shape), "b64": base64.b64encode(data).decode("ascii")}


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], bias: float = 0.0) -> np.ndarray:
    """Random float32 map with blobs (a coarse grid resized up) and pixel noise: masks with objects and edges."""
    coarse = rng.normal(size=(int(rng.integers(2, 7)), int(rng.integers(2, 7)))).astype(np.float32)
    field = resize_bilinear(coarse, shape) + 0.05 * rng.normal(size=shape).astype(np.float32)
    return (field + np.float32(bias)).astype(np.float32)


def random_clicks(rng: np.random.Generator, count: int, height: int, width: int) -> list[Click]:
    return [Click(int(rng.integers(height)), int(rng.integers(width)), bool(rng.integers(2))) for _ in range(count)]


def click_json(click: Click) -> list[Any]:
    return [click.y, click.x, click.is_positive]


# ------------------------------------------------------------------------------------ function cases


def function_cases(rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    sizes = [(1, 1), (7, 5), (33, 65), (64, 96), (100, 37), (127, 130)]
    radii = [(5, 0), (3, 4), (13, 0), (2.5, 1.5), (0, 0), (-1, 3), (40, 0)]
    cases: dict[str, list[dict[str, Any]]] = {k: [] for k in ("labels", "add", "merge", "update", "roi", "resize")}
    for height, width in sizes:
        for inner, outer in radii:
            clicks = random_clicks(rng, int(rng.integers(1, 6)), height, width)
            cases["labels"].append(
                {
                    "shape": [height, width],
                    "radii": [inner, outer],
                    "clicks": [click_json(c) for c in clicks],
                    "out": packed(clicks_to_ref_label(clicks, (height, width), inner, outer)),
                }
            )
            ref = rng.integers(0, 5, size=(height, width)).astype(np.uint8)
            click = random_clicks(rng, 1, height, width)[0]
            cases["add"].append(
                {
                    "ref": packed(ref),
                    "radii": [inner, outer],
                    "click": click_json(click),
                    "out": packed(add_click(ref, click, inner, outer)),
                }
            )
        prev, new = (rng.integers(0, 5, size=(height, width)).astype(np.uint8) for _ in range(2))
        cases["merge"].append({"prev": packed(prev), "new": packed(new), "out": packed(merge_ref_labels(prev, new))})
        pred = rng.integers(0, 2, size=(height, width)).astype(np.uint8)
        cases["update"].append(
            {"ref": packed(prev), "pred": packed(pred), "out": packed(update_ref_label_with_prediction(prev, pred))}
        )
        for expand, min_size, stride in [(1.4, 32, 32), (1.0, 0, 1), (2.3, 100, 8), (1.4, 7, 32), (0.5, 1, 4)]:
            for kind in ("blob", "empty", "hard"):
                field = smooth_field(rng, (height, width))
                blob = (field > 0.3).astype(np.uint8) if kind == "blob" else np.zeros((height, width), np.uint8)
                ref = np.full((height, width), 2, np.uint8)
                if kind == "hard":  # a few definite pixels only: the box comes from the reference label
                    ref.flat[rng.integers(height * width, size=3)] = rng.choice([0, 4], size=3)
                cases["roi"].append(
                    {
                        "pred": packed(blob),
                        "ref": packed(ref),
                        "params": [expand, min_size, stride],
                        "roi": list(zoom_roi(blob, ref, expand, min_size, stride)),
                        "padded": list(zoom_roi_padded(blob, ref, stride, expand, min_size)),
                    }
                )
        for _ in range(3):
            src = smooth_field(rng, (height, width))
            out_size = (int(rng.integers(1, 2 * height + 3)), int(rng.integers(1, 2 * width + 3)))
            resized = resize_bilinear(src, out_size)
            cases["resize"].append(
                {"src": packed(src), "size": list(out_size), "out": packed(resized), "mask": packed(resized > 0)}
            )
    return cases


# ------------------------------------------------------------------------------------- session cases


@dataclass
class FakeDecoder:
    """What :class:`ClickSession` uses of a Decoder, with random smooth logits per distinct input.

    The same inputs give the same logits (the real decoder is deterministic, and undo relies on it); every
    call is recorded: its padded reference label, roi and the logits it returned.
    """

    rng: np.random.Generator
    uses_roi: bool
    padded: tuple[int, int]
    encoded: tuple[int, int]

    def __post_init__(self) -> None:
        self.manifest = SimpleNamespace(
            zoom_in=SimpleNamespace(uses_roi=self.uses_roi, expand_ratio=1.4, min_size=32, stride=32, start_click=1),
            clicks=SimpleNamespace(inner_radius=5, outer_radius=0),
        )
        self.outputs: dict[bytes, int] = {}
        self.table: list[dict[str, Any]] = []  # distinct inputs and their logits
        self.calls: list[int] = []  # index into table, per call

    def check(self, features: ImageFeatures) -> None:
        pass

    def image_inputs(self, features: ImageFeatures) -> dict[str, np.ndarray]:
        return {}

    def run(self, feed: dict[str, np.ndarray], ref_label: np.ndarray, roi: tuple[int, int, int, int] | None):
        key = ref_label.tobytes() + repr(roi).encode()
        if key not in self.outputs:
            # now and then an all-background or all-object answer (the roi's empty-mask branch, full masks)
            bias = float(self.rng.choice([0.0, 0.0, 0.0, -5.0, 5.0]))
            logits = np.stack([smooth_field(self.rng, self.padded), smooth_field(self.rng, self.padded, bias)])
            self.outputs[key] = len(self.table)
            self.table.append(
                {"ref": packed(ref_label[0, 0]), "roi": None if roi is None else list(roi), "logits": packed(logits)}
            )
        index = self.outputs[key]
        self.calls.append(index)
        return np.frombuffer(base64.b64decode(self.table[index]["logits"]["b64"]), "<f4").reshape(1, 2, *self.padded)


def session_case(rng: np.random.Generator, original: tuple[int, int], max_side: int | None, zoom_in: bool):
    height, width = original
    enc_h, enc_w, scale = fit_size(height, width, max_side)
    padded = padded_shape(enc_h, enc_w)
    decoder = FakeDecoder(rng, zoom_in, padded, (enc_h, enc_w))
    meta = FeatureMeta("m", "img", original, (enc_h, enc_w), padded, scale, "float16")
    undo_cache = int(rng.integers(0, 3))
    session = ClickSession(decoder, ImageFeatures({}, meta), undo_cache=undo_cache)
    steps = []
    actions = ["click"] * 4 + ["undo", "click", "click", "undo", "undo", "click", "reset", "click", "click", "undo"]
    for action in actions:
        calls_before = len(decoder.calls)
        if action == "click":
            y, x, positive = int(rng.integers(height)), int(rng.integers(width)), bool(rng.integers(2))
            session.add_click(y, x, positive)
            step: dict[str, Any] = {"action": "click", "click": [y, x, positive]}
        elif action == "undo":
            if not session.clicks:
                continue
            session.undo()
            step = {"action": "undo"}
        else:
            session.reset()
            step = {"action": "reset"}
        step.update(
            calls=decoder.calls[calls_before:],
            mask=packed(session.mask),
            ref=packed(session.ref_label),
            roi=None if session.roi is None else list(session.roi),
            clicks=[[c.y, c.x, c.is_positive] for c in session.clicks],
        )
        steps.append(step)
    return {
        "original": list(original),
        "encoded": [enc_h, enc_w],
        "padded": list(padded),
        "zoom_in": zoom_in,
        "undo_cache": undo_cache,
        "zoom": {"expand_ratio": 1.4, "min_size": 32, "stride": 32, "start_click": 1},
        "radii": [5, 0],
        "table": decoder.table,
        "steps": steps,
    }


def session_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    shapes = [((45, 67), None), ((64, 64), None), ((97, 150), 100), ((150, 97), 64), ((120, 200), 77), ((33, 31), 20)]
    return [session_case(rng, original, max_side, zoom) for original, max_side in shapes for zoom in (False, True)]


# ------------------------------------------------------------------------------------ payload and PNG


def mixed_payload(inputs: dict[str, np.ndarray], float32: set[str]) -> bytes:
    """A payload as the contract allows it: float16 tensors, and float32 ones that say so with their own dtype."""
    tensors, blobs, offset = [], [], 0
    for name, value in inputs.items():
        data = value.astype("<f4" if name in float32 else "<f2").tobytes()
        entry = {"name": name, "shape": list(value.shape), "offset": offset, "length": value.size}
        tensors.append({**entry, "dtype": "float32"} if name in float32 else entry)
        blobs.append(data + b"\0" * (-len(data) % 8))
        offset += len(blobs[-1])
    header = json.dumps({"model_id": "m0", "image": "mixed", "dtype": "float16", "tensors": tensors}).encode()
    head = b"IFE1" + struct.pack("<I", len(header)) + header
    return head + b"\0" * (-len(head) % 8) + b"".join(blobs)


def payload_case(folder: Path, rng: np.random.Generator) -> dict[str, Any]:
    """The server's own payload writer (its types: ``PAYLOAD_DTYPES``), and one written here with feat0 and
    ctx2 in float32."""
    from interformer_edge.annotate.browser_decode import PAYLOAD_DTYPES, feature_payload

    meta = FeatureMeta("m0", "a b/c.jpg", (70, 90), (70, 90), (96, 96), 1.0, "float16")
    special = np.array([0.0, -0.0, 6.1e-5, 5.96e-8, -5.96e-8, 65504, -65504, np.inf, -np.inf, 1 / 3], np.float32)
    shapes = {"feat0": (1, 4, 24, 24), "ctx0": (1, 9, 6), "ctx1": (1, 3, 2), "ctx2": (1, 1, 3), "ctx3": (1, 5, 4)}
    inputs = {}
    for name, shape in shapes.items():
        values = rng.normal(scale=rng.choice([1e-3, 1.0, 300.0]), size=shape).astype(np.float32)
        values.flat[: special.size] = special[: values.size]
        inputs[name] = values
    (folder / "payload.bin").write_bytes(feature_payload("a b/c.jpg", "m0", ImageFeatures({}, meta), inputs))
    (folder / "mixed.bin").write_bytes(mixed_payload(inputs, {"feat0", "ctx2"}))

    def shipped(name: str, float32: bool) -> dict[str, Any]:
        return packed(inputs[name] if float32 else inputs[name].astype(np.float16).astype(np.float32))

    return {
        "payload.bin": {name: shipped(name, PAYLOAD_DTYPES[name] == "float32") for name in inputs},
        "mixed.bin": {name: shipped(name, name in ("feat0", "ctx2")) for name in inputs},
    }


def png_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for height, width in [(1, 1), (3, 8), (17, 9), (40, 123), (300, 451)]:
        mask = smooth_field(rng, (height, width)) > 0
        cases.append({"file": f"mask-{height}x{width}.png", "mask": packed(mask)})
    return cases


# ------------------------------------------------------------------------------------------- the test


def run_node(folder: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None, (
        "node is not installed: the JS click protocol is tested with Node's test runner (apt-get install nodejs)"
    )
    return subprocess.run(
        [node, "--test", "--test-reporter=spec", str(JS_TESTS)],
        env={"PATH": str(Path(node).parent), "INTERFORMER_GOLDEN_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
    )


def test_the_js_click_protocol_equals_the_python_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(35)
    folder = tmp_path / "golden"
    folder.mkdir()
    (folder / "functions.json").write_text(json.dumps(function_cases(rng)))
    sessions = session_cases(rng)
    (folder / "sessions.json").write_text(json.dumps(sessions))
    (folder / "payload.json").write_text(json.dumps(payload_case(folder, rng)))
    pngs = png_cases(rng)
    (folder / "png.json").write_text(json.dumps(pngs))

    result = run_node(folder)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    counts = dict(re.findall(r"^\S+ (pass|fail|skipped) (\d+)$", result.stdout, flags=re.MULTILINE))
    assert counts == {"pass": counts.get("pass"), "fail": "0", "skipped": "0"} and int(counts["pass"]) >= 21, counts

    # the cases exercised what they are meant to: downscaled masks, zoom-in rois, undo recomputing logits
    steps = [s for case in sessions for s in case["steps"]]
    assert any(c["encoded"] != c["original"] for c in sessions)
    assert any(s["roi"] is not None for s in steps)
    assert any(s["action"] == "undo" and s["calls"] for s in steps)
    masks = [np.frombuffer(base64.b64decode(s["mask"]["b64"]), np.uint8) for s in steps]
    assert any(m.all() for m in masks if m.size) and any(0 < m.mean() < 1 for m in masks)

    for case in pngs:  # written by the JS encoder: PIL must read back the very mask
        image = Image.open(folder / "out" / case["file"])
        expected = np.frombuffer(base64.b64decode(case["mask"]["b64"]), np.uint8).reshape(case["mask"]["shape"])
        assert image.mode == "1" and image.size == (expected.shape[1], expected.shape[0])
        assert np.array_equal(np.asarray(image), expected.astype(bool)), case["file"]
