"""The INT8 accuracy gate with the INT8 decoder run in the browser (onnxruntime-web, WebAssembly).

onnxruntime-web's integer kernels are not native ONNX Runtime's, so an INT8 decoder that passed
``interformer-quantize``'s gate natively has not passed it in the browser. This runs the same gate
(:mod:`interformer_edge.quantize.gate`: held-out click sessions, INT8 against the native FP32 decoder, mean IoU
per click and NoC@90) with every INT8 decoder pass made in headless chromium, on the decoder inputs a page
gets (the context tokens rounded to float16 as on the wire).

    python scripts/browser_int8_gate.py -m interformer_export --objects 20

Needs an export quantized for ONNX Runtime (``decoder.int8.onnx``), the serve and dev extras (Playwright)
and Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path

import numpy as np
from browser_decoder_bench import CHROMIUM_ARGS, cpu_description, serve_page

from interformer_edge.annotate.browser_decode import PAYLOAD_DTYPES
from interformer_edge.assets import HELDOUT_DIR
from interformer_edge.core.dataset import open_dataset
from interformer_edge.core.evaluation import EVAL_MAX_CLICKS
from interformer_edge.quantize import gate
from interformer_edge.runtime.export import RuntimeSettings, open_export

PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import * as ort from "./ort/ort.wasm.min.mjs";
ort.env.wasm.wasmPaths = "/ort/";
const floats = (b64) => new Float32Array(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
let session = null;
const images = new Map();
window.load = async (model, threads) => {
  ort.env.wasm.numThreads = threads;
  session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  return session.inputNames;
};
window.setImage = (key, tensors) => {
  const feed = {};
  for (const [name, t] of Object.entries(tensors)) { feed[name] = new ort.Tensor("float32", floats(t.data), t.shape); }
  images.clear();
  images.set(key, feed);
};
window.run = async (key, ref, shape, roi) => {
  const feed = { ...images.get(key) };
  feed.ref_label = new ort.Tensor("uint8", Uint8Array.from(atob(ref), (c) => c.charCodeAt(0)), shape);
  if (session.inputNames.includes("roi")) {
    feed.roi = new ort.Tensor("int64", BigInt64Array.from(roi, BigInt), [1, 4]);
  }
  const logits = (await session.run(feed)).logits;
  const bytes = new Uint8Array(logits.data.buffer, logits.data.byteOffset, logits.data.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) { text += String.fromCharCode(...bytes.subarray(i, i + 0x8000)); }
  return btoa(text);
};
</script>"""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="export folder with decoder.int8.onnx")
    parser.add_argument("--objects", type=int, default=20, help="held-out objects (default 20, as the quick start)")
    parser.add_argument("--clicks", type=int, default=EVAL_MAX_CLICKS, help="click budget per session")
    parser.add_argument("--threads", type=int, default=2, help="WebAssembly threads (default 2)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    export = open_export(args.model)
    settings = RuntimeSettings("onnxruntime", 2)
    encoder, fp32 = export.encoder(settings), export.decoder(settings)
    heldout = open_dataset(HELDOUT_DIR, limit=args.objects)
    objects = [gate.GateObject(s.name, encoder.encode(s.image, name=s.name), s.mask) for s in heldout]
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.2f}; {len(objects)} held-out objects")
    references = gate.reference_sessions(fp32, objects, args.clicks)

    int8 = export.manifest.graph_path("decoder", "onnx", "int8").read_bytes()
    server = serve_page(PAGE, {"decoder.int8.onnx": int8}, "browser-gate")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
        page.wait_for_function("typeof window.run === 'function'")
        page.evaluate("([m, t]) => window.load(m, t)", ["decoder.int8.onnx", args.threads])
        candidate = export.decoder(settings, "int8")  # its image inputs are computed natively, as the server's
        shown: list[dict[str, np.ndarray]] = []  # the image inputs the page holds

        def browser_run(feed: dict[str, np.ndarray], ref_label: np.ndarray, roi: tuple | None) -> np.ndarray:
            key = "image"
            if not shown or shown[0] is not feed:
                wire = {
                    name: {"shape": list(v.shape), "data": _b64(v.astype(PAYLOAD_DTYPES[name]).astype(np.float32))}
                    for name, v in feed.items()
                }
                page.evaluate("([k, t]) => window.setImage(k, t)", [key, wire])
                shown[:] = [feed]
            box = list(roi) if roi is not None else [0, 0, ref_label.shape[3], ref_label.shape[2]]
            data = page.evaluate(
                "([k, r, s, b]) => window.run(k, r, s, b)", [key, _b64(ref_label), list(ref_label.shape), box]
            )
            return np.frombuffer(base64.b64decode(data), np.float32).reshape(1, 2, *ref_label.shape[2:])

        candidate.run = browser_run
        result = gate.evaluate(candidate, references, args.clicks)
        browser.close()
    server.shutdown()
    print(
        f"INT8 in the browser vs native FP32: mean IoU {result.mean_iou_vs_fp32:.4f} "
        f"(min {result.min_iou_vs_fp32:.4f}), NoC@90 {result.noc90:.2f} vs {result.noc90_fp32:.2f} "
        f"(delta {result.noc90_delta:+.2f}); gate "
        f"(mean IoU >= {gate.DEFAULT_MIN_IOU}, |delta NoC@90| <= {gate.DEFAULT_MAX_NOC90_DELTA}): "
        f"{'passed' if result.passed else 'FAILED'}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
