"""The device runtime: numpy + ONNX Runtime / OpenVINO inference. Never import torch or ``models`` here.

It builds on :mod:`interformer_edge.core` (constants, click protocol, manifest) and nothing else of this package.

Public API (imported lazily, so importing the package stays cheap)::

    Encoder(export_dir, backend="auto", threads=None, max_side=1024)  .encode(path | array) -> ImageFeatures
    save_features(features, path) / load_features(path, expected_model_id=None)
    Decoder(export_dir, backend="auto", threads=None)
    ClickSession(decoder, features)  .add_click(y, x, positive) / .undo() / .reset() / .mask / .predict
    open_export(export_dir) -> Export  .encoder(RuntimeSettings(backend, threads, compute)) / .decoder(...)
    load_graph(path_or_dir, graph, backend, threads, compute) -> Graph with .run(inputs) -> outputs
    encode_folder(source, store, EncodeSettings(model), workers=2) -> EncodeResult  (a folder into a feature store)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Encoder": "encoder",
    "Decoder": "decoder",
    "ClickSession": "session",
    "ImageFeatures": "features",
    "FeatureMeta": "features",
    "load_features": "features",
    "save_features": "features",
    "read_meta": "features",
    "model_id": "features",
    "load_graph": "backends",
    "open_export": "export",
    "Export": "export",
    "RuntimeSettings": "export",
    "encode_folder": "encode_run",
    "EncodeResult": "encode_run",
    "EncodeRunError": "encode_run",
    "EncodeSettings": "encode_image",
    "InterFormerRuntimeError": "errors",
    "BackendError": "errors",
    "FeatureFileError": "errors",
    "ModelMismatchError": "errors",
    "ClickError": "errors",
    "MemoryBudgetError": "errors",
    "ImageReadError": "interformer_edge.core.image_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(module if "." in module else f"{__name__}.{module}"), name)
