"""What a quantization gives: each backend's outcome, the result, and the records written to the manifest
(their keys are the manifest's ``quantized`` entries: keep them stable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interformer_edge.core.cpu import host_cpu
from interformer_edge.core.manifest import Manifest
from interformer_edge.core.spec import DECODER_INT8_ONNX, DECODER_INT8_OV
from interformer_edge.core.versions import tool_versions

from .gate import GateResult
from .inputs import QuantizeInputs
from .options import QuantizeOptions
from .targets import get_target

# The decoder variant a quantization installs, and its file per backend.
INT8_FILES = {"onnxruntime": DECODER_INT8_ONNX, "openvino": DECODER_INT8_OV}


@dataclass
class DeviceDefaultGate:
    """The accuracy gate of an INT8 decoder run with OpenVINO's device default compute type for its float
    layers (``computes_in``: ``bf16``, ``f16``)."""

    computes_in: str
    result: GateResult

    def record(self) -> dict[str, Any]:
        return {"computes_in": self.computes_in, **self.result.to_dict()}


@dataclass
class BackendOutcome:
    """What happened on one backend: the gate of the last attempt and every attempt's summary."""

    backend: str
    file: str
    passed: bool
    result: GateResult
    float_layers: list[str]
    attempts: list[dict[str, Any]]
    size_bytes: int = 0
    fp32_size_bytes: int = 0
    latency_ms: dict[str, Any] = field(default_factory=dict)
    quantize_seconds: float = 0.0
    # The gate of the same file run with OpenVINO's device default compute type, where that is not f32.
    device_default: DeviceDefaultGate | None = None

    def record(self) -> dict[str, Any]:
        """The manifest's ``gates[backend]`` entry."""
        device = {} if self.device_default is None else {"device_default": self.device_default.record()}
        return {
            **self.result.to_dict(),
            "float_layers": self.float_layers,
            "attempts": self.attempts,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "fp32_size_bytes": self.fp32_size_bytes,
            "latency_ms": self.latency_ms,
            "quantize_seconds": round(self.quantize_seconds, 1),
            **device,
        }


@dataclass
class QuantizeResult:
    """A finished quantization: every backend's outcome, the calibration record, skipped inputs
    (``problems``), the export's manifest as it is now and, when gated in a browser, that gate's record
    (``gates["onnxruntime-web"]``, see :mod:`.browser_gate`)."""

    export_dir: Path
    outcomes: list[BackendOutcome]
    calibration: dict[str, Any]
    problems: list[str]
    manifest: Manifest
    seconds: float
    browser: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes) and (self.browser is None or self.browser["passed"] is True)


def attempt_record(keep_float: list[str], result: GateResult) -> dict[str, Any]:
    """One attempt's summary in the manifest's ``attempts`` list."""
    return {
        "float_layers": len(keep_float),
        "mean_iou_vs_fp32": round(result.mean_iou_vs_fp32, 5),
        "noc90_delta": round(result.noc90_delta, 3),
        "passed": result.passed,
    }


def calibration_record(options: QuantizeOptions, inputs: QuantizeInputs) -> dict[str, Any]:
    """The manifest's ``calibration`` entry: target and scheme, build host, calibration and gate settings."""
    target = get_target(options.target)
    return {
        "target": target.name,
        "scheme": target.scheme.to_dict(),
        "build_host": host_cpu().to_dict(),
        "method": options.method,
        "num_sessions": options.num_sessions,
        "session_clicks": f"1..{options.calib_clicks}",
        "samples": len(inputs.samples),
        "images": inputs.calibration_images,
        "source": str(inputs.calib_dir.resolve()) if options.calib_dir is not None else "bundled assets/calib",
        "heldout": str(inputs.heldout_dir.resolve()) if options.heldout_dir is not None else "bundled assets/heldout",
        "gate_objects": len(inputs.references),
        "gate_clicks": options.gate_clicks,
        "keep_float_patterns": {b: list(options.keep_float_patterns(b)) for b in options.backends},
        "seed": options.seed,
        "tools": tool_versions(("interformer_edge", "onnxruntime", "openvino", "nncf", "onnx")),
    }
