"""Workstation side: export InterFormer to ONNX / OpenVINO IR behind a parity gate (imports torch).

Public API: :func:`run_export` with :class:`ExportOptions` → :class:`ExportResult`; bad input raises
:class:`ExportError`. The CLI is ``interformer-export`` (:mod:`.cli`). Modules: :mod:`.onnx_graphs` (tracing,
graph passes, onnxslim, metadata), :mod:`.openvino_ir` (IR conversion), :mod:`.parity` (the gate),
:mod:`.conventions` (what graphs and manifest record of preprocessing, clicks, zoom-in), :mod:`.pipeline`
(orchestration, atomic output). The manifest schema lives in the torch-free
``interformer_edge.core.manifest``.
"""

from .parity import GateSettings
from .pipeline import ExportError, ExportOptions, ExportResult, run_export

__all__ = ["ExportError", "ExportOptions", "ExportResult", "GateSettings", "run_export"]
