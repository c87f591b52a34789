"""Which click decoder the annotator serves under ``auto``: only gated configurations, the fastest measured.

The host's CPU class, OpenVINO's device precision and the timings are set by the tests, so the verdicts
do not depend on the machine running them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from interformer_edge.annotate import decoder_choice
from interformer_edge.annotate.decoder_choice import DecoderChoice, candidates, choose_decoder
from interformer_edge.core.manifest import QuantizedGraph, load_manifest
from interformer_edge.runtime.export import Export

HOST_CLASS = "x86-avx512-vnni"


def with_int8(manifest, gates: dict, covers: tuple[str, ...] = (HOST_CLASS,)):
    variant = QuantizedGraph(
        graph="decoder",
        precision="int8",
        files={"onnx": "decoder.int8.onnx", "openvino": "decoder.int8.xml"},
        calibration={},
        gates=gates,
        created="",
        target="portable",
        covers=covers,
    )
    return replace(manifest, quantized=(variant,))


@pytest.fixture
def manifest(light_export: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(decoder_choice, "host_cpu", lambda: SimpleNamespace(cpu_class=HOST_CLASS))
    monkeypatch.setattr(decoder_choice, "installed_backends", lambda: ["onnxruntime", "openvino"])
    monkeypatch.setattr(decoder_choice, "openvino_device_precision", lambda: "bf16")
    return load_manifest(light_export)


def described(choices: list[DecoderChoice]) -> set[tuple[str, str, str]]:
    return {(c.backend, c.variant, c.compute) for c in choices}


def test_only_gated_int8_files_and_computes_are_candidates(manifest) -> None:
    passed_ov = {"passed": True, "device_default": {"passed": True}}
    gates = {"onnxruntime": {"passed": False}, "openvino": passed_ov}
    assert described(candidates(with_int8(manifest, gates), DecoderChoice())) == {
        ("onnxruntime", "fp32", "f32"),
        ("openvino", "fp32", "f32"),
        ("openvino", "int8", "f32"),
        ("openvino", "int8", "device"),  # its own gate at the device's bf16 passed
    }
    no_device = {"onnxruntime": {"passed": True}, "openvino": {"passed": True, "device_default": {"passed": False}}}
    assert ("openvino", "int8", "device") not in described(candidates(with_int8(manifest, no_device), DecoderChoice()))
    assert ("onnxruntime", "int8", "f32") in described(candidates(with_int8(manifest, no_device), DecoderChoice()))
    # an INT8 target that does not cover this CPU class: no INT8 candidate at all
    elsewhere = with_int8(manifest, gates, covers=("arm64-dotprod",))
    assert {c.variant for c in candidates(elsewhere, DecoderChoice())} == {"fp32"}
    # fixed fields narrow the search; an explicit variant is served even without a gate
    asked = DecoderChoice(backend="onnxruntime", variant="int8", compute="f32")
    assert described(candidates(with_int8(manifest, gates), asked)) == {("onnxruntime", "int8", "f32")}
    assert described(candidates(manifest, DecoderChoice(backend="openvino"))) == {("openvino", "fp32", "f32")}


def test_device_compute_is_no_candidate_where_the_device_computes_in_f32(manifest, monkeypatch) -> None:
    monkeypatch.setattr(decoder_choice, "openvino_device_precision", lambda: "f32")
    gates = {"openvino": {"passed": True, "device_default": {"passed": True}}}
    assert {c.compute for c in candidates(with_int8(manifest, gates), DecoderChoice())} == {"f32"}


def test_the_fastest_measured_candidate_is_served(manifest, monkeypatch) -> None:
    gates = {"onnxruntime": {"passed": True}, "openvino": {"passed": True}}
    timings = {("onnxruntime", "fp32"): 60.0, ("onnxruntime", "int8"): 41.0, ("openvino", "fp32"): 55.0}
    timings[("openvino", "int8")] = 44.0
    monkeypatch.setattr(DecoderChoice, "load", lambda self, *args: (self.backend, self.variant))
    monkeypatch.setattr(decoder_choice, "median_click_ms", lambda decoder, features: timings[decoder])
    made = []
    best, decoder, measured = choose_decoder(
        Export(Path("."), with_int8(manifest, gates)), DecoderChoice(), None, lambda: made.append(1) or "image"
    )
    assert (best.backend, best.variant, decoder) == ("onnxruntime", "int8", ("onnxruntime", "int8"))
    assert sorted(measured.values()) == sorted(timings.values()) and made == [1]
    # nothing to choose: nothing timed, no image made
    made.clear()
    asked = DecoderChoice(backend="openvino", variant="fp32", compute="f32")
    best, _, measured = choose_decoder(Export(Path("."), manifest), asked, None, lambda: made.append(1))
    assert (best.backend, measured, made) == ("openvino", {}, [])
    with pytest.raises(ValueError, match="no gated click decoder"):
        choose_decoder(Export(Path("."), manifest), DecoderChoice(variant="int8"), None, lambda: None)
