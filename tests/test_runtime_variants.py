"""Quantized variants of an export: recorded in the manifest, loaded by name, hash-checked like the exported files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_runtime import photo

from interformer_edge.core.manifest import load_manifest
from interformer_edge.runtime import BackendError, ClickSession, Decoder, Encoder, load_graph


def test_quantized_variants_are_recorded_loaded_and_verified(light_export: Path, tmp_path: Path) -> None:
    """A variant in the manifest is loadable by name; its files are hash-checked like the exported ones.

    The "int8" file here is a scaled copy of the FP32 decoder, which is enough to prove which file runs.
    """
    import shutil

    import onnx
    from onnx import numpy_helper

    from interformer_edge.core.manifest import (
        ManifestError,
        QuantizedGraph,
        with_quantized,
        write_manifest,
    )

    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    proto = onnx.load(export / "decoder.onnx")
    for tensor in proto.graph.initializer:
        if "conv_seg" in tensor.name:  # weight and bias: the variant's logits are the negated FP32 logits
            tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
    onnx.save(proto, export / "decoder.int8.onnx")
    variant = QuantizedGraph(
        graph="decoder",
        precision="int8",
        files={"onnx": "decoder.int8.onnx"},
        calibration={"method": "test"},
        gates={},
        created="now",
    )
    write_manifest(with_quantized(load_manifest(export), variant, export), export)

    manifest = load_manifest(export)
    assert manifest.precisions("decoder") == ["fp32", "int8"]
    assert manifest.precisions("encoder") == ["fp32"]
    assert "decoder.int8.onnx" in {f.name for f in manifest.files}
    encoder = Encoder(export, threads=1)
    features = encoder.encode(photo(64, 64))
    fp32 = ClickSession(Decoder(export, threads=1), features)
    int8 = ClickSession(Decoder(export, threads=1, variant="int8"), features)
    assert Decoder(export, threads=1, variant="int8").graph.path.name == "decoder.int8.onnx"
    fp32.add_click(30, 30)
    int8.add_click(30, 30)
    np.testing.assert_allclose(int8.logit_difference, -fp32.logit_difference, atol=1e-4)

    with pytest.raises(BackendError, match="no int8 encoder"):
        load_graph(export, "encoder", variant="int8")
    with pytest.raises(BackendError, match="no way to run the int8 decoder"):
        load_graph(export, "decoder", backend="openvino", variant="int8")
    # Replacing the variant keeps one entry and re-describes its file.
    write_manifest(with_quantized(load_manifest(export), variant, export), export)
    assert [q.precision for q in load_manifest(export).quantized] == ["int8"]
    # A tampered variant file is refused like any other artifact.
    data = bytearray((export / "decoder.int8.onnx").read_bytes())
    data[-1] ^= 0xFF
    (export / "decoder.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"decoder\.int8\.onnx does not match its sha256"):
        load_manifest(export)
    # A manifest naming a variant file it does not describe is refused.
    raw = json.loads((export / "manifest.json").read_text())
    raw["files"] = [f for f in raw["files"] if f["name"] != "decoder.int8.onnx"]
    (export / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"int8 decoder file 'decoder\.int8\.onnx' is not among"):
        load_manifest(export)
