"""Click decoder speed in the browser (onnxruntime-web, WebAssembly) beside native ONNX Runtime, in one run.

Serves a small page (cross-origin isolated, so WebAssembly threads work) with the vendored
onnxruntime-web, loads each decoder file of an export in headless chromium, and times one decoder run
per click on the per-image inputs of one 512x512 photo (``--size``), at 1 and 2 threads; native ONNX
Runtime runs the same graph with the same inputs and threads, the two taking turns so that the machine's
load drifts over both. Also reports the per-image payload size (float16) and whether WebNN is offered.

Two single-op graphs bound what any decoder graph can reach: a square GEMM (the hosts' multiply-add
peak through each engine) and the decoder's largest convolution (UPerHead's 3x3 fusion over four
64-channel maps at H/4 x W/4). Their browser/native ratios are the floor of the decoder's ratio for a
graph made of such ops: WebAssembly SIMD is 128 bits wide, native kernels use the host's widest
vectors (AVX-512 or AMX here).

    python scripts/browser_decoder_bench.py -m interformer_export --runs 20

Needs the serve and dev extras (Playwright) and Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from interformer_edge.annotate.browser_decode import PAYLOAD_TENSORS, feature_payload
from interformer_edge.core.headless import CHROMIUM_ARGS, DEFAULT_CHROMIUM
from interformer_edge.core.spec import LOGITS_OUTPUT, REF_LABEL_INPUT
from interformer_edge.quantize.browser_gate import isolated_site
from interformer_edge.runtime.backends import symbolic_dims
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.export import open_export

PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import * as ort from "./ort/ort.wasm.min.mjs";
ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
window.bench = async (model, threads, runs, inputs, dims) => {
  ort.env.wasm.numThreads = threads;
  const started = performance.now();
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  if (dims) { options.freeDimensionOverrides = dims; }  // static shapes: the symbolic sizes fixed
  const session = await ort.InferenceSession.create(model, options);
  const createMs = performance.now() - started;
  const feeds = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const data = new (spec.type === "uint8" ? Uint8Array : Float32Array)(spec.length);
    if (spec.type !== "uint8") { for (let i = 0; i < data.length; i++) { data[i] = Math.sin(i * 0.37) * 0.5; } }
    else { data.fill(2); data.fill(4, spec.length / 2 - 64, spec.length / 2 + 64); }
    feeds[name] = new ort.Tensor(spec.type, data, spec.shape);
  }
  const times = [];
  for (let k = 0; k < runs + 1; k++) {
    const t0 = performance.now();
    await session.run(feeds);
    if (k) { times.push(performance.now() - t0); }
  }
  await session.release();
  return { createMs, times, isolated: crossOriginIsolated, webnn: "ml" in navigator };
};
</script>"""


def single_op_graphs(height: int, width: int) -> list[tuple[str, bytes, dict[str, dict], int]]:
    """The floor rows: ``(name, ONNX model bytes, input spec for the page, FLOPs)``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    size, channels, out, rows, cols = 1024, 256, 64, height // 4, width // 4
    cases = [
        (f"GEMM {size}x{size}x{size}", "MatMul", {}, [size, size], [size, size], (size, size), 2 * size**3),
        (
            f"conv 3x3 {channels}->{out} at {cols}x{rows}", "Conv", {"pads": [1, 1, 1, 1]},
            [1, channels, rows, cols], [1, out, rows, cols], (out, channels, 3, 3),
            2 * out * channels * 9 * rows * cols,
        ),
    ]  # fmt: skip
    graphs = []
    for name, op, attributes, shape_in, shape_out, weight_shape, flops in cases:
        weight = numpy_helper.from_array(rng.standard_normal(weight_shape, dtype=np.float32) * 0.02, "w")
        graph = helper.make_graph(
            [helper.make_node(op, ["x", "w"], ["y"], **attributes)], op,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out)], [weight],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        spec = {"x": {"type": "float32", "shape": shape_in, "length": int(np.prod(shape_in))}}
        graphs.append((name, model.SerializeToString(), spec, flops))
    return graphs


def cpu_description() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = sorted(set(re.findall(r"\b(avx512_vnni|avx_vnni|avx2|asimddp)\b", text)))
    return f"{found.group(1) if found else platform.processor()} ({os.cpu_count()} cores; {' '.join(flags)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="export folder")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per row (after one untimed)")
    parser.add_argument("--size", default="512x512", help="HxW of the image (default 512x512)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--static", action="store_true", help="fix the graphs' symbolic sizes on both sides")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    height, width = (int(v) for v in args.size.lower().split("x"))
    export = open_export(args.model)
    variants = export.manifest.precisions("decoder")
    features = Encoder(export, threads=2, max_side=0).encode(np.full((height, width, 3), 128, np.uint8))
    inputs = Decoder(export, threads=2).image_inputs(features)
    ref = np.full((1, 1, *features.meta.padded_size), 2, np.uint8)
    payload = feature_payload("bench", export.model_id, features, inputs)
    shapes = {**{name: value.shape for name, value in inputs.items()}, REF_LABEL_INPUT: ref.shape}
    # the symbolic dimensions' values at this size (``H``, ``H/4``, ``ctx0_tokens``...), for --static
    dims = symbolic_dims(Decoder(export, "onnxruntime", 1).graph.declared_shapes, shapes) if args.static else None
    spec = {
        name: {"type": "float32", "shape": list(inputs[name].shape), "length": inputs[name].size}
        for name in PAYLOAD_TENSORS
    }
    spec[REF_LABEL_INPUT] = {"type": "uint8", "shape": list(ref.shape), "length": ref.size}

    # (row name, model file in the site, page input spec, --static dims, native run, FLOPs or None)
    cases: list[tuple[str, str, dict, dict | None, Callable[[int], Callable[[], object]], int | None]] = []
    for variant in variants:

        def decoder_run(threads: int, variant: str = variant) -> Callable[[], object]:
            native = Decoder(export, "onnxruntime", threads, variant=variant, static_shapes=args.static)
            feed = native.graph_inputs(inputs, ref, None)
            return lambda: native.graph.run(feed)[LOGITS_OUTPUT]

        cases.append((f"decoder {variant}", f"decoder.{variant}.onnx", spec, dims, decoder_run, None))
    models = {f"decoder.{variant}.onnx": export.manifest.graph_path("decoder", "onnx", variant).read_bytes()
              for variant in variants}  # fmt: skip
    for index, (name, model, op_spec, flops) in enumerate(single_op_graphs(height, width)):

        def op_run(threads: int, model: bytes = model, op_spec: dict = op_spec) -> Callable[[], object]:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            feed = {key: np.sin(np.arange(v["length"], dtype=np.float32) * 0.37).reshape(v["shape"])
                    for key, v in op_spec.items()}  # fmt: skip
            return lambda: session.run(None, feed)

        models[f"op{index}.onnx"] = model
        cases.append((name, f"op{index}.onnx", op_spec, None, op_run, flops))

    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.2f}; image {width}x{height}")
    print(f"payload per image (feat0 float32, context tokens float16): {len(payload) / 1e6:.2f} MB")
    rows = []
    with isolated_site(PAGE, models) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(DEFAULT_CHROMIUM), args=CHROMIUM_ARGS)
        for name, model, page_spec, page_dims, native_run, flops in cases:
            for threads in (int(t) for t in args.threads.split(",")):
                # a fresh page per row: onnxruntime-web reads numThreads once, when its WebAssembly starts
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function("typeof window.bench === 'function'")
                run = native_run(threads)
                web_times, native_times, created = [], [], None
                for _ in range(2):  # two rounds, the engines taking turns
                    result = page.evaluate(
                        "([m, t, r, i, d]) => window.bench(m, t, r, i, d)",
                        [model, threads, args.runs // 2, page_spec, page_dims],
                    )
                    web_times += result["times"]
                    created = created or result
                    run()
                    for _ in range(args.runs // 2):
                        started = time.perf_counter()
                        run()
                        native_times.append((time.perf_counter() - started) * 1000)
                page.close()
                web, nat = statistics.median(web_times), statistics.median(native_times)
                row = {"graph": name, "threads": threads, "wasm_p50_ms": web, "native_p50_ms": nat, "ratio": web / nat}
                speed = ""
                if flops:
                    row |= {"wasm_gflops": flops / web / 1e6, "native_gflops": flops / nat / 1e6}
                    speed = f"   {row['wasm_gflops']:5.1f} vs {row['native_gflops']:5.1f} GFLOP/s"
                rows.append(row)
                print(
                    f"{name:>28} {threads} thread(s): browser WASM p50 {web:7.1f} ms   native ONNX Runtime p50 "
                    f"{nat:7.1f} ms   ratio {web / nat:4.2f}x{speed}   "
                    f"(session created in {created['createMs']:.0f} ms; "
                    f"isolated {created['isolated']}, WebNN offered {created['webnn']})"
                )
        browser.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
