"""Which click decoder the server runs: the one asked for, or under ``auto`` the fastest that passes its gate.

A decoder configuration is a backend (ONNX Runtime, OpenVINO), a variant of the export's decoder file
(``fp32``, or ``int8`` written by ``interformer-quantize``), OpenVINO's compute type for float layers
(``f32``, or ``device``: bf16/f16 where the CPU has them) and whether it is compiled per image size
(static shapes: faster, the same masks). Which is fastest depends on the CPU, so ``auto`` measures:
each candidate answers a few clicks on one encoded image and the lowest median wins. Only
configurations whose masks were gated are candidates: ``fp32`` at ``f32`` (the export's parity gate),
an ``int8`` file whose accuracy gate passed on that backend and whose INT8 target covers this CPU
class, and ``int8`` at the device's compute type where that gate was run and passed too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from interformer_edge.core.cpu import host_cpu
from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.core.timing import TimingPolicy, measure
from interformer_edge.runtime.backends import (
    BACKENDS,
    DEFAULT_COMPUTE,
    DEVICE_COMPUTE,
    FORMAT_OF,
    installed_backends,
    openvino_device_precision,
)
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.export import Export, RuntimeSettings
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

log = logging.getLogger("interformer_edge.annotate")

AUTO = "auto"
TIMED_CLICKS = 5  # after one untimed click; the median decides
TIMING = TimingPolicy(warmup=1, min_runs=TIMED_CLICKS, budget_s=0.0, max_runs=TIMED_CLICKS)


@dataclass(frozen=True)
class DecoderChoice:
    """One way to run the click decoder (see the module docstring); ``"auto"`` fields are still to choose."""

    backend: str = AUTO
    variant: str = AUTO
    compute: str = AUTO
    static_shapes: bool = True
    static_sizes: int = 2  # with static shapes: image sizes kept compiled

    def describe(self) -> str:
        shapes = "static shapes" if self.static_shapes else "dynamic shapes"
        shown = f"device: {openvino_device_precision()}" if self.compute == DEVICE_COMPUTE else self.compute
        compute = f", {shown} compute" if self.backend == "openvino" else ""
        return f"{self.backend} {self.variant} ({shapes}{compute})"

    def load(self, export: Export, threads: int | None) -> Decoder:
        settings = RuntimeSettings(self.backend, threads, self.compute)
        return export.decoder(settings, self.variant, self.static_shapes, self.static_sizes)


def _int8_gate(manifest: Manifest, variant: str, backend: str) -> dict | None:
    quantized = manifest.quantized_variant("decoder", variant)
    if quantized is None or host_cpu().cpu_class not in quantized.covers:
        return None
    gate = quantized.gates.get(backend)
    return gate if isinstance(gate, dict) and gate.get("passed") is True else None


def candidates(manifest: Manifest, asked: DecoderChoice) -> list[DecoderChoice]:
    """Every gated configuration that matches what was asked (``auto`` fields open), runnable here."""
    backends = [b for b in BACKENDS if b in installed_backends()] if asked.backend == AUTO else [asked.backend]
    present = manifest.precisions("decoder")
    variants = present if asked.variant == AUTO else [v for v in present if v == asked.variant]
    found = []
    for backend in backends:
        for variant in variants:
            if FORMAT_OF[backend] not in manifest.files_of("decoder", variant):
                continue
            gate = None if variant == BASE_PRECISION else _int8_gate(manifest, variant, backend)
            if asked.variant == AUTO and variant != BASE_PRECISION and gate is None:
                continue  # not gated for this backend or this CPU class
            computes = [asked.compute] if asked.compute != AUTO else [DEFAULT_COMPUTE]
            if asked.compute == AUTO and backend == "openvino" and gate is not None:
                device = gate.get("device_default")
                if (
                    isinstance(device, dict)
                    and device.get("passed") is True
                    and openvino_device_precision() != DEFAULT_COMPUTE
                ):
                    computes.append(DEVICE_COMPUTE)
            for compute in computes:
                found.append(replace(asked, backend=backend, variant=variant, compute=compute))
    return found


def median_click_ms(decoder: Decoder, features: ImageFeatures) -> float:
    """Median milliseconds of one click on ``features``: a correction click after a first one, timed
    :data:`TIMED_CLICKS` times after one untimed (:func:`~interformer_edge.core.timing.measure`); each
    timed call ends with its undo, which restores the state without a decoder run."""
    session = ClickSession(decoder, features)  # compiles a static-shape decoder for this size now
    height, width = session.height, session.width
    session.add_click(height // 2, width // 2, True)

    def correction() -> None:
        session.add_click(int(0.3 * (height - 1)), int(0.35 * (width - 1)), False)
        session.undo()

    return measure(correction, TIMING).p50_ms


def choose_decoder(
    export: Export,
    asked: DecoderChoice,
    threads: int | None,
    features: Callable[[], ImageFeatures],
) -> tuple[DecoderChoice, Decoder, dict[DecoderChoice, float]]:
    """The configuration to serve, its loaded decoder, and the timing of each candidate (empty: nothing to time).

    ``features``: makes the image the candidates are timed on (called only when there is a choice).

    Raises:
        ValueError: no configuration matches what was asked.
    """
    manifest = export.manifest
    found = candidates(manifest, asked)
    if not found:
        raise ValueError(
            f"no gated click decoder matches {asked.describe()} here "
            f"(installed backends: {', '.join(installed_backends()) or 'none'}; "
            f"the export's decoders: {', '.join(manifest.precisions('decoder'))})"
        )
    if len(found) == 1:
        return found[0], found[0].load(export, threads), {}
    image = features()
    timings: dict[DecoderChoice, float] = {}
    decoders: dict[DecoderChoice, Decoder] = {}
    for choice in found:
        decoders[choice] = choice.load(export, threads)
        timings[choice] = median_click_ms(decoders[choice], image)
        log.info("decoder %s: %.1f ms per click", choice.describe(), timings[choice])
    best = min(timings, key=timings.__getitem__)
    return best, decoders[best], timings


def timing_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture to time decoders on: a bright disk on a noisy background."""
    height, width = size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 96, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disk = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 4) ** 2
    image[disk] = (220, 180, 60)
    return image
