"""What a quantization takes: :class:`QuantizeOptions`, their defaults and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interformer_edge.core.headless import DEFAULT_CHROMIUM
from interformer_edge.core.spec import EVAL_MAX_CLICKS
from interformer_edge.runtime.backends import BACKENDS, installed_backends

from .gate import GateThresholds
from .targets import DEFAULT_TARGET, TARGETS

METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
# Kept float by default, per backend, chosen by measurement on the bundled model (figures: docs/int8.md).
# PatchMerging normalizes each patch after its (3x3, stride-2) convolution, with statistics from poolings
# of the map and its square: the convolution reads the un-normalized map, and on OpenVINO, where a
# pattern keeps the whole region float, NNCF would otherwise also quantize the poolings, squares and
# divisions, which costs accuracy.
PATCH_MERGING_LAYERS = r"^/neck/stages\.\d+/downsample/"
# Stage 0's inverted bottleneck works on 8x-expanded stride-4 maps around Hardswish. ONNX Runtime has no
# integer kernel for Hardswish, so there INT8 adds quantize/dequantize passes over the largest tensors and
# the decoder gets slower; OpenVINO fuses them into its integer convolutions and gets faster, so only ONNX
# Runtime keeps it float.
STAGE0_BOTTLENECK_LAYERS = r"^/neck/stages\.0/blocks\.\d+/mlp/"
DEFAULT_KEEP_FLOAT: dict[str, tuple[str, ...]] = {
    "onnxruntime": (STAGE0_BOTTLENECK_LAYERS, PATCH_MERGING_LAYERS),
    "openvino": (PATCH_MERGING_LAYERS,),
}


class QuantizeError(Exception):
    """Bad input or an unusable environment; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class QuantizeOptions:
    """What to quantize and how; ``None`` folders mean the bundled calibration and held-out sets."""

    export_dir: Path
    backends: tuple[str, ...] = BACKENDS
    target: str = DEFAULT_TARGET
    calib_dir: Path | None = None
    heldout_dir: Path | None = None
    num_sessions: int = 48
    calib_clicks: int = EVAL_MAX_CLICKS
    max_samples: int = 240
    method: str = "minmax"
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    gate_clicks: int = EVAL_MAX_CLICKS
    gate_limit: int | None = None
    keep_float: tuple[str, ...] | None = None  # None: DEFAULT_KEEP_FLOAT of each backend
    max_float_layers: int = 16
    sensitivity_samples: int = 12
    threads: int | None = None
    latency_size: tuple[int, int] = (512, 512)  # (H, W) canvas of the quick latency check
    latency_runs: int = 20
    seed: int = 0
    browser: bool = False  # also gate the ONNX Runtime INT8 decoder as onnxruntime-web runs it (.browser_gate)
    browser_only: bool = False  # only that: gate the installed INT8 decoder in the browser, build nothing
    chromium: Path = DEFAULT_CHROMIUM

    def keep_float_patterns(self, backend: str) -> tuple[str, ...]:
        """The ``keep_float`` patterns that apply on ``backend`` (its default unless set)."""
        return DEFAULT_KEEP_FLOAT[backend] if self.keep_float is None else self.keep_float


def validate(options: QuantizeOptions) -> None:
    """Reject bad options before any work (raises :class:`QuantizeError`)."""
    if not options.backends or any(b not in BACKENDS for b in options.backends):
        raise QuantizeError(f"backends must be a non-empty subset of {', '.join(BACKENDS)}, got {options.backends}")
    needed = {"onnxruntime"} if options.browser_only else {"onnxruntime", *options.backends}
    missing = [b for b in needed if b not in installed_backends()]
    if missing:
        # ONNX Runtime is always needed: it runs the FP32 reference and the sensitivity search.
        raise QuantizeError(f"backend not installed: {', '.join(sorted(missing))}")
    if options.target not in TARGETS:
        raise QuantizeError(f"unknown INT8 target {options.target!r}; use {', '.join(TARGETS)}")
    if options.method not in METHODS:
        raise QuantizeError(f"unknown calibration method {options.method!r}; use {', '.join(METHODS)}")
    checks = [
        (options.num_sessions >= 1, "--num-sessions must be at least 1"),
        (1 <= options.calib_clicks <= 100, "--calib-clicks must be 1..100"),
        (options.max_samples >= 1, "--max-samples must be at least 1"),
        (1 <= options.gate_clicks <= 100, "--gate-clicks must be 1..100"),
        (options.gate_limit is None or options.gate_limit >= 1, "--gate-limit must be at least 1"),
        (0.0 < options.thresholds.min_iou <= 1.0, "--min-iou must be in (0, 1]"),
        (options.thresholds.max_noc90_delta >= 0.0, "--max-noc-delta must be >= 0"),
        (options.max_float_layers >= 0, "--max-float-layers must be >= 0"),
        (options.threads is None or options.threads >= 1, "--threads must be at least 1"),
        (options.latency_runs >= 0, "--latency-runs must be >= 0"),
    ]
    if options.browser and not options.browser_only and "onnxruntime" not in options.backends:
        checks.append((False, "--browser gates the ONNX Runtime INT8 decoder: include onnxruntime in --backends"))
    for ok, message in checks:
        if not ok:
            raise QuantizeError(message)
