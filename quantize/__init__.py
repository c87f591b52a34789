"""Workstation side: the INT8 click decoder (ONNX Runtime static QDQ, OpenVINO NNCF), calibrated on
simulated click sessions and gated on held-out ones against FP32.

Public API: :func:`run_quantize` with :class:`QuantizeOptions` → :class:`QuantizeResult`; bad input
raises :class:`QuantizeError`. The CLI is ``interformer-quantize`` (:mod:`.cli`). Modules:
:mod:`.calibration` (click-session inputs), :mod:`.onnxrt` and :mod:`.nncf_ov` (the two quantizers),
:mod:`.gate` (accuracy gate), :mod:`.sensitivity` (which layers to keep float), :mod:`.pipeline`.
"""

from .gate import GateResult, GateThresholds
from .pipeline import QuantizeError, QuantizeOptions, QuantizeResult, run_quantize

__all__ = ["GateResult", "GateThresholds", "QuantizeError", "QuantizeOptions", "QuantizeResult", "run_quantize"]
