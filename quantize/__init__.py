"""Workstation side: the INT8 click decoder (ONNX Runtime static QDQ, OpenVINO NNCF), calibrated on
simulated click sessions and gated on held-out ones against FP32. It runs the exported graphs: no torch.

Public API: :func:`run_quantize` with :class:`QuantizeOptions` → :class:`QuantizeResult`; bad input
raises :class:`QuantizeError`. The CLI is ``interformer-quantize`` (:mod:`.cli`). Modules, in step
order: :mod:`.options` (what a run takes), :mod:`.inputs` (calibration samples from :mod:`.calibration`,
FP32 references from :mod:`.gate`), :mod:`.candidates` (one backend: :mod:`.onnxrt` or :mod:`.nncf_ov`
with the scheme of :mod:`.targets`, the gate, :mod:`.sensitivity` when it fails), :mod:`.latency`,
:mod:`.install`, :mod:`.browser_gate` (the gate again in a browser, with onnxruntime-web); :mod:`.results`
(what a run gives) and :mod:`.pipeline` (the order).
"""

from .gate import GateResult, GateThresholds
from .options import QuantizeError, QuantizeOptions
from .pipeline import run_quantize
from .results import QuantizeResult

__all__ = ["GateResult", "GateThresholds", "QuantizeError", "QuantizeOptions", "QuantizeResult", "run_quantize"]
