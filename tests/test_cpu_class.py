"""The host's INT8 CPU class, and the one-line warning when an INT8 decoder runs outside its target."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from interformer_edge.core import cpu
from interformer_edge.core.cpu import (
    ARM64,
    ARM64_DOTPROD,
    CPU_CLASSES,
    UNKNOWN,
    X86_AVX2,
    X86_VNNI,
    HostCpu,
    check_int8_target,
    classify,
    isa_flags,
    read_cpuinfo,
)
from interformer_edge.core.manifest import QuantizedGraph, load_manifest, with_quantized, write_manifest
from interformer_edge.runtime import Decoder

CPUINFO = Path(__file__).resolve().parents[1] / "scripts" / "arm64" / "cpuinfo"


@pytest.mark.parametrize(
    "arm, flags, machine, expected",
    [
        (False, {"avx2", "fma"}, "x86_64", X86_AVX2),  # AMD Zen 3, Intel Haswell..Comet Lake
        (False, {"avx2", "avx512f", "avx512bw"}, "x86_64", X86_AVX2),  # Skylake-SP: AVX-512 without VNNI
        (False, {"avx2", "avx512f", "avx512_vnni"}, "x86_64", X86_VNNI),  # Cascade Lake, Zen 4
        (False, {"avx2", "avx_vnni"}, "x86_64", X86_VNNI),  # Alder Lake
        (False, {"avx2", "avx512_vnni", "amx_int8"}, "x86_64", X86_VNNI),  # Sapphire Rapids
        (False, set(), "AMD64", X86_AVX2),  # no cpuinfo (Windows): the class with the fewest guarantees
        (True, {"asimd"}, "aarch64", ARM64),  # Cortex-A72, Raspberry Pi 4
        (True, {"asimd", "asimddp"}, "aarch64", ARM64_DOTPROD),  # Cortex-A76, Raspberry Pi 5
        (False, set(), "riscv64", UNKNOWN),
    ],
)
def test_cpu_classes_follow_the_int8_dot_product_flags(arm: bool, flags: set[str], machine: str, expected: str) -> None:
    assert classify(arm, flags, machine) == expected


@pytest.mark.parametrize("board, expected", [("pi5", ARM64_DOTPROD), ("pi4", ARM64)])
def test_a_raspberry_pi_cpuinfo_gives_its_class(board: str, expected: str) -> None:
    facts = isa_flags(read_cpuinfo(CPUINFO / f"{board}.txt"))
    if facts.get("hwcap") is None:  # on an aarch64 host the kernel's own view decides instead
        assert facts["int8_class"] == expected


@pytest.fixture
def avx2_host(monkeypatch: pytest.MonkeyPatch) -> HostCpu:
    """Pretend this host is an AVX2-only x86 CPU, whatever it really is."""
    host = HostCpu(X86_AVX2, "Test CPU without VNNI", ("avx2",))
    monkeypatch.setattr(cpu, "host_cpu", lambda: host)
    monkeypatch.setattr(cpu, "_warned", set())
    return host


def test_an_uncovered_host_is_warned_once_in_one_line(avx2_host: HostCpu, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interformer_edge")
    assert check_int8_target("portable", CPU_CLASSES)
    assert not caplog.records
    assert not check_int8_target("vnni", (X86_VNNI, ARM64, ARM64_DOTPROD))
    assert not check_int8_target("vnni", (X86_VNNI, ARM64, ARM64_DOTPROD))
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "'vnni'" in message and "x86-avx2" in message and "--target portable" in message


def test_decoder_of_an_int8_variant_checks_its_target(
    light_export: Path, tmp_path: Path, avx2_host: HostCpu, caplog: pytest.LogCaptureFixture
) -> None:
    """The manifest's target and coverage reach the runtime; variants recorded before targets existed
    read as full-range (the vnni target), which does not cover AVX2."""
    caplog.set_level(logging.WARNING, logger="interformer_edge")
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    shutil.copy(export / "decoder.onnx", export / "decoder.int8.onnx")  # which file it is does not matter here

    variant = QuantizedGraph(
        graph="decoder",
        precision="int8",
        files={"onnx": "decoder.int8.onnx"},
        calibration={},
        gates={},
        created="now",
        target="portable",
        covers=CPU_CLASSES,
    )
    write_manifest(with_quantized(load_manifest(export), variant, export), export)
    assert Decoder(export, threads=1, variant="int8").target == "portable"
    assert Decoder(export, threads=1).target is None
    assert not caplog.records

    # A manifest written before targets existed has neither key.
    data = json.loads((export / "manifest.json").read_text())
    for entry in data["quantized"]:
        del entry["target"], entry["covers"]
    (export / "manifest.json").write_text(json.dumps(data))
    variant = load_manifest(export).quantized_variant("decoder", "int8")
    assert variant is not None and variant.target == "vnni" and X86_AVX2 not in variant.covers
    assert Decoder(export, threads=1, variant="int8").target == "vnni"
    assert len(caplog.records) == 1 and "x86-avx2" in caplog.records[0].getMessage()
    Decoder(export, threads=1, variant="int8")
    assert len(caplog.records) == 1, "warned once"
