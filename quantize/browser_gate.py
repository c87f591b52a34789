"""The INT8 gate in a browser: the ONNX Runtime INT8 decoder as the annotator's page runs it (onnxruntime-web).

onnxruntime-web's WebAssembly integer kernels are not native ONNX Runtime's (on the bundled model one
click's mask differs between the two, IoU 0.9855), so an INT8 decoder that passed its gate natively has not
passed it in the page. This gate runs :func:`.gate.evaluate` against the same FP32 references with every INT8
decoder pass made by the annotator's own vendored onnxruntime-web in headless chromium (Playwright), on the
inputs a page gets (each per-image tensor rounded to its type on the wire), with the page's session options.
It then times the FP32 and INT8 decoders in the same page at ``latency_size``.

The record (``gates["onnxruntime-web"]`` of the INT8 variant in ``manifest.json``) names the onnxruntime-web
version and the INT8 file's sha256: ``interformer-annotate`` serves the INT8 decoder to pages only while both
still match, the gate passed and INT8 was the faster of the two in the browser.

Needs Playwright (``pip install 'interformer-edge[browser]'``) and a chromium (Debian: ``apt-get install
chromium``); the page is served on loopback, cross-origin isolated so that WebAssembly threads work.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import statistics
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.headless import CHROMIUM_ARGS, DEFAULT_CHROMIUM
from interformer_edge.core.manifest import BASE_PRECISION, BROWSER_GATE, INT8_VARIANT
from interformer_edge.core.spec import LOGITS_OUTPUT, REF_LABEL_INPUT
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.export import Export, RuntimeSettings

from . import gate
from .latency import latency_inputs
from .options import QuantizeError

MIN_TIMED_RUNS = 3  # the annotator picks the faster decoder by these figures, so they are always measured
PAGE_TIMEOUT_MS = 120_000  # one Playwright call (loading a decoder, a pass on a large canvas)

# The page: the vendored onnxruntime-web with the annotator worker's session options (WebAssembly, all graph
# optimizations). Tensors cross as base64; an image's per-image inputs once, then a label per click.
PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import * as ort from "./ort/ort.wasm.min.mjs";
ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
// base64 both ways with the browser's own codecs (a data: URL, a FileReader): megabytes per click
const bytes = async (b64) => (await fetch("data:application/octet-stream;base64," + b64)).arrayBuffer();
const base64 = (data) => new Promise((resolve) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
  reader.readAsDataURL(new Blob([data]));
});
const TYPES = { float32: Float32Array, uint8: Uint8Array, int64: BigInt64Array };
const tensor = async (t) => new ort.Tensor(t.type, new TYPES[t.type](await bytes(t.data)), t.shape);
const tensors = async (ts) => Object.fromEntries(
  await Promise.all(Object.entries(ts).map(async ([k, t]) => [k, await tensor(t)])));
const sessions = {};
let image = {};
window.gate = {
  async load(name, threads) {
    ort.env.wasm.numThreads = threads;
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    sessions[name] = await ort.InferenceSession.create("./" + name, options);
    return ort.env.wasm.numThreads;
  },
  async setImage(ts) { image = await tensors(ts); },
  async run(name, clickInputs, output) {
    const out = (await sessions[name].run({ ...image, ...(await tensors(clickInputs)) }))[output];
    return base64(out.data);
  },
  async time(name, clickInputs, runs) {
    const feed = { ...image, ...(await tensors(clickInputs)) };
    await sessions[name].run(feed);  // untimed: the first run plans memory
    const times = [];
    for (let k = 0; k < runs; k++) {
      const t0 = performance.now();
      await sessions[name].run(feed);
      times.push(performance.now() - t0);
    }
    return times;
  },
};
window.ready = true;
</script>"""


class _IsolatedHandler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args: object) -> None:  # the quantizer's progress is the log
        pass


@contextmanager
def isolated_site(page: str, files: dict[str, bytes]) -> Iterator[str]:
    """Serve ``page`` as ``index.html``, the vendored onnxruntime-web under ``ort/`` and ``files`` on loopback,
    cross-origin isolated (WebAssembly threads need it), from a temporary folder removed afterwards.

    Yields:
        the page's URL.
    """
    from interformer_edge.annotate.browser_decode import load_ort_web

    with tempfile.TemporaryDirectory(prefix="interformer-browser-") as folder:
        site = Path(folder)
        (site / "ort").mkdir()
        (site / "index.html").write_text(page, encoding="utf-8")
        for name, path in load_ort_web().files.items():
            (site / "ort" / name).write_bytes(path.read_bytes())
        for name, data in files.items():
            (site / name).write_bytes(data)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_IsolatedHandler, directory=folder))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/index.html"
        finally:
            server.shutdown()
            server.server_close()


def _wire(array: np.ndarray, dtype: str | None = None) -> dict[str, Any]:
    """A tensor for the page: type, shape, base64 data (``dtype`` given: rounded to it, sent as float32)."""
    if dtype is not None:
        array = array.astype(dtype).astype(np.float32)
    kind = {np.dtype(np.float32): "float32", np.dtype(np.uint8): "uint8", np.dtype(np.int64): "int64"}[array.dtype]
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return {"type": kind, "shape": list(array.shape), "data": data}


class BrowserPage:
    """Decoder files loaded by onnxruntime-web in one headless chromium page (see the module docstring).

    Args:
        page: a Playwright page on :data:`PAGE`.
        per_image: the names of the decoder's per-image inputs and their types on the wire (the annotator's
            payload types); every other input is sent per run.
    """

    def __init__(self, page: Any, per_image: dict[str, str]) -> None:
        self.page = page
        self.per_image = per_image
        self._shown: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, page: Any, url: str, per_image: dict[str, str]) -> BrowserPage:
        """``page`` navigated to :data:`PAGE` served at ``url`` (:func:`isolated_site`), once it is ready."""
        page.goto(url)
        page.wait_for_function("window.ready === true")
        return cls(page, per_image)

    def load(self, name: str, threads: int) -> int:
        """Load the served file ``name``; returns the WebAssembly threads in use."""
        return int(self.page.evaluate("([n, t]) => window.gate.load(n, t)", [name, threads]))

    def _split(self, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        image = {k: v for k, v in inputs.items() if k in self.per_image}
        # The same arrays as last time (a click session's per-image feed): not sent again.
        if image.keys() != self._shown.keys() or any(image[k] is not self._shown[k] for k in image):
            tensors = {k: _wire(v, self.per_image[k]) for k, v in image.items()}
            self.page.evaluate("(t) => window.gate.setImage(t)", tensors)
            self._shown = image
        return {k: _wire(v) for k, v in inputs.items() if k not in self.per_image}

    def run(self, name: str, inputs: dict[str, np.ndarray], output: str, shape: tuple[int, ...]) -> np.ndarray:
        """One pass of ``name``; returns ``output`` as float32 of ``shape``."""
        click = self._split(inputs)
        data = self.page.evaluate("([n, c, o]) => window.gate.run(n, c, o)", [name, click, output])
        return np.frombuffer(base64.b64decode(data), np.float32).reshape(shape)

    def time_ms(self, name: str, inputs: dict[str, np.ndarray], runs: int) -> list[float]:
        """Milliseconds of ``runs`` passes of ``name`` on ``inputs`` (after one untimed)."""
        click = self._split(inputs)
        return [float(t) for t in self.page.evaluate("([n, c, r]) => window.gate.time(n, c, r)", [name, click, runs])]


@dataclass
class BrowserGraph:
    """The INT8 decoder file as the page runs it, behind the runtime's graph interface (:class:`.backends.Graph`),
    so that a :class:`~interformer_edge.runtime.decoder.Decoder` (and its click sessions) can drive it."""

    browser: BrowserPage
    name: str
    path: Path
    input_names: list[str]
    output_names: list[str]
    backend: str = BROWSER_GATE

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs``: the decoder's (``ref_label`` ``(1, 1, Hp, Wp)``) → ``{"logits": (1, 2, Hp, Wp)}``."""
        height, width = inputs[REF_LABEL_INPUT].shape[2:]
        return {LOGITS_OUTPUT: self.browser.run(self.name, inputs, LOGITS_OUTPUT, (1, 2, height, width))}


def run_in_browser(decoder: Decoder, browser: BrowserPage, name: str, path: Path) -> Decoder:
    """``decoder`` with its click graph replaced by the file ``name`` (``path``) loaded in ``browser``: its click
    sessions then decode with onnxruntime-web; its context graph still runs natively, as the server's does."""
    graph = decoder.graph
    decoder.graph = BrowserGraph(browser, name, path, graph.input_names, graph.output_names)
    return decoder


def check_browser(chromium: Path) -> None:
    """Raise :class:`QuantizeError` now, before any work, when Playwright or ``chromium`` is missing."""
    if importlib.util.find_spec("playwright") is None:
        raise QuantizeError("--browser needs Playwright: pip install 'interformer-edge[browser]' (and a chromium)")
    if not os.access(chromium, os.X_OK):
        raise QuantizeError(f"--browser: no chromium at {chromium} (Debian: apt-get install chromium; or --chromium)")


@contextmanager
def chromium_page(chromium: Path) -> Iterator[tuple[Any, str]]:
    """A new page of a headless ``chromium`` driven by Playwright, and the browser's version."""
    check_browser(chromium)
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        except PlaywrightError as err:
            raise QuantizeError(f"--browser: {chromium} does not start: {str(err).splitlines()[0]}") from None
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page, browser.version
        finally:
            browser.close()


def browser_gate(
    export: Export,
    references: Sequence[gate.ReferenceSession],
    clicks: int,
    thresholds: gate.GateThresholds,
    threads: int,
    latency_size: tuple[int, int],
    latency_runs: int,
    chromium: Path = DEFAULT_CHROMIUM,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Gate ``export``'s installed INT8 ONNX decoder as onnxruntime-web runs it (module docstring), and time it
    beside the FP32 decoder there; returns the manifest's ``gates["onnxruntime-web"]`` record.

    Raises:
        QuantizeError: no INT8 ONNX decoder, no Playwright or chromium.
    """
    from interformer_edge.annotate.browser_decode import PAYLOAD_DTYPES, load_ort_web

    manifest = export.manifest
    if "onnx" not in manifest.files_of("decoder", INT8_VARIANT):
        raise QuantizeError(f"{export.root} has no INT8 ONNX decoder (decoder.int8.onnx) to gate in a browser")
    variants = (BASE_PRECISION, INT8_VARIANT)
    files = {variant: manifest.graph_path("decoder", "onnx", variant).read_bytes() for variant in variants}
    names = {variant: f"decoder.{variant}.onnx" for variant in files}
    settings = RuntimeSettings("onnxruntime", threads)
    int8_path = manifest.graph_path("decoder", "onnx", INT8_VARIANT)
    runs = max(MIN_TIMED_RUNS, latency_runs)
    with isolated_site(PAGE, {names[v]: data for v, data in files.items()}) as url, chromium_page(chromium) as opened:
        page, browser_version = opened
        browser = BrowserPage.open(page, url, PAYLOAD_DTYPES)
        used_threads = 0
        for variant in files:
            used_threads = browser.load(names[variant], threads)
        candidate = run_in_browser(export.decoder(settings, INT8_VARIANT), browser, names[INT8_VARIANT], int8_path)
        result = gate.evaluate(candidate, references, clicks, thresholds, progress)
        timing = latency_inputs(candidate.context, latency_size, candidate.uses_roi)
        latency = {v: statistics.median(browser.time_ms(names[v], timing, runs)) for v in files}
    return {
        **result.to_dict(),
        "file": int8_path.name,
        "sha256": hashlib.sha256(files[INT8_VARIANT]).hexdigest(),
        "onnxruntime_web": load_ort_web().version,
        "browser": f"chromium {browser_version}",
        "threads": used_threads,
        "inputs": dict(PAYLOAD_DTYPES),
        "latency_ms": {
            BASE_PRECISION: round(latency[BASE_PRECISION], 2),
            INT8_VARIANT: round(latency[INT8_VARIANT], 2),
            "size": f"{latency_size[0]}x{latency_size[1]}",
            "runs": runs,
        },
    }
