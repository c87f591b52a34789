"""The benchmark's accuracy part: which rows take part, their click sessions on the dataset against
the FP32 reference (:mod:`.accuracy`), and the export's own parity gate beside them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from interformer_edge.core.dataset import open_dataset
from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.runtime.backends import DEFAULT_COMPUTE, installed_backends
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import InterFormerRuntimeError
from interformer_edge.runtime.export import Export, RuntimeSettings

from . import accuracy
from .accuracy_results import AccuracyReport, ExportGate, GateResult
from .configs import BenchConfig
from .measurements import Failure
from .options import BenchOptions
from .steps import StepLine


def accuracy_report(
    options: BenchOptions, export: Export, configs: list[BenchConfig], say: StepLine, failures: list[Failure]
) -> AccuracyReport:
    """Parity with the FP32 reference and interactive quality on the dataset (see :mod:`.accuracy`).
    A configuration that fails to load is listed in ``failures`` and left out (the reference must load).

    PyTorch eager is not among the rows: on this protocol it costs several times all other rows
    together (its decoder is 3-5x slower), and how closely the export follows it is what the export's
    own parity gate measured; that gate's result is reported here as ``export_gate``."""
    manifest = export.manifest
    threads = max(options.threads)
    reference = next((c for c in configs if (c.variant, c.compute) == (BASE_PRECISION, DEFAULT_COMPUTE)), None)
    if reference is None:  # e.g. --rows int8: the reference is still needed, it is just not a row
        backend = next(b for b in (*options.backends, *installed_backends()))
        reference = BenchConfig(backend)
    encoders: dict[tuple[str, str], Encoder] = {}
    participants = []
    for config in [reference, *[c for c in configs if c != reference]]:
        settings = RuntimeSettings(config.backend, threads, config.compute)
        try:
            if config.encoder_key not in encoders:
                encoders[config.encoder_key] = export.encoder(settings, max_side=0)
            decoder = export.decoder(settings, variant=config.variant)
        except InterFormerRuntimeError as err:
            if config == reference:
                raise
            failures.append(Failure.of_row("accuracy", config, str(err)))
            continue
        participants.append(
            accuracy.Participant(config, _runtime_start(encoders[config.encoder_key], decoder, config.encoder_key))
        )
    part = AccuracyReport(
        dataset=str(options.dataset),
        threads=threads,
        clicks=options.clicks,
        limit=options.limit,
        zoom_in=manifest.zoom_in.uses_roi,
        export_gate=export_gate(manifest),
    )
    if options.dataset is None:
        return replace(part, skipped="no dataset")
    dataset = open_dataset(options.dataset)
    found = accuracy.evaluate(
        accuracy.usable_samples(dataset, options.limit),
        participants[0],
        participants[1:],
        options.clicks,
        zoom_in=manifest.zoom_in.uses_roi,
        zoom_start=manifest.zoom_in.start_click,
        progress=lambda line: say(f"accuracy: {line}"),
        total=min(len(dataset), options.limit or len(dataset)),
    )
    return replace(
        part,
        reference=found.reference,
        objects=found.objects,
        rows=found.rows,
        per_object=found.per_object,
        problems=list(dataset.problems),
        dataset_size=len(dataset),
        skipped="no usable object in the dataset (see problems)" if found.objects == 0 else None,
    )


def export_gate(manifest: Manifest) -> ExportGate:
    """The export's parity gate (PyTorch eager vs each backend, FP32), per backend: worst logit difference
    and mask agreement of the decoder, over the gate's sizes and cases."""
    gate = manifest.parity
    worst: dict[str, GateResult] = {}
    for check in gate.checks:
        if check.graph != "decoder":
            continue
        entry = worst.get(check.backend, GateResult(logit_max_abs_diff=0.0, mask_agreement_min=1.0, passed=True))
        worst[check.backend] = GateResult(
            logit_max_abs_diff=max(entry.logit_max_abs_diff, check.max_abs_diff)
            if check.max_abs_diff is not None
            else entry.logit_max_abs_diff,
            mask_agreement_min=min(entry.mask_agreement_min, check.mask_agreement)
            if check.mask_agreement is not None
            else entry.mask_agreement_min,
            passed=entry.passed and check.passed,
        )
    return ExportGate(gate.passed, list(gate.sizes), gate.abs_tolerance, worst)


def _runtime_start(encoder: Encoder, decoder: Decoder, key: tuple[str, str]) -> Callable[..., accuracy.LogitsFn]:
    def start(image: np.ndarray, cache: dict[Any, Any]) -> accuracy.LogitsFn:
        if key not in cache:
            cache[key] = encoder.encode(image)
        return accuracy.runtime_logits(decoder, cache[key])

    return start
