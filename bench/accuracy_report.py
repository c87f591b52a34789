"""The benchmark's accuracy part: which rows take part, their click sessions on the dataset against
the FP32 reference (:mod:`.accuracy`), and the export's own parity gate beside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from interformer_edge.core.dataset import open_dataset
from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.runtime.backends import installed_backends
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import InterFormerRuntimeError

from . import accuracy
from .configs import BenchConfig

if TYPE_CHECKING:
    from .suite import BenchOptions, Progress


def accuracy_report(
    options: BenchOptions, manifest: Manifest, configs: list[BenchConfig], say: Progress, failures: list[dict[str, Any]]
) -> dict[str, Any]:
    """Parity with the FP32 reference and interactive quality on the dataset (see :mod:`.accuracy`).
    A configuration that fails to load is listed in ``failures`` and left out (the reference must load).

    PyTorch eager is not among the rows: on this protocol it costs several times all other rows
    together (its decoder is 3-5x slower), and how closely the export follows it is what the export's
    own parity gate measured; that gate's result is reported here as ``export_gate``."""
    threads = max(options.threads)
    reference = next((c for c in configs if c.precision == BASE_PRECISION), None)
    if reference is None:  # e.g. --precisions int8: the reference is still needed, it is just not a row
        backend = next(b for b in (*options.backends, *installed_backends()))
        reference = BenchConfig(backend, BASE_PRECISION)
    encoders: dict[tuple[str, str], Encoder] = {}
    participants = []
    for config in [reference, *[c for c in configs if c != reference]]:
        try:
            if config.encoder_key not in encoders:
                encoders[config.encoder_key] = Encoder(
                    manifest.root, config.backend, threads, config.hint, manifest=manifest, max_side=0
                )
            decoder = Decoder(
                manifest.root, config.backend, threads, config.hint, manifest=manifest, variant=config.variant
            )
        except InterFormerRuntimeError as err:
            if config == reference:
                raise
            failures.append({"part": "accuracy", **config.to_dict(), "error": str(err)})
            continue
        participants.append(
            accuracy.Participant(config, _runtime_start(encoders[config.encoder_key], decoder, config.encoder_key))
        )
    dataset = open_dataset(options.dataset) if options.dataset else None
    result: dict[str, Any] = {
        "dataset": str(options.dataset),
        "threads": threads,
        "clicks": options.clicks,
        "limit": options.limit,
        "zoom_in": manifest.zoom_in.uses_roi,
        "export_gate": export_gate(manifest),
    }
    if dataset is None:
        return {**result, "skipped": "no dataset", "rows": [], "problems": []}
    result.update(
        accuracy.evaluate(
            accuracy.usable_samples(dataset, options.limit),
            participants[0],
            participants[1:],
            options.clicks,
            zoom_in=manifest.zoom_in.uses_roi,
            zoom_start=manifest.zoom_in.start_click,
            progress=lambda line: say(f"accuracy: {line}"),
            total=min(len(dataset), options.limit or len(dataset)),
        )
    )
    result["problems"] = list(dataset.problems)
    result["dataset_size"] = len(dataset)
    if result["objects"] == 0:
        result["skipped"] = "no usable object in the dataset (see problems)"
        result["rows"] = []
    return result


def export_gate(manifest: Manifest) -> dict[str, Any]:
    """The export's parity gate (PyTorch eager vs each backend, FP32), per backend: worst logit difference
    and mask agreement of the decoder, over the gate's sizes and cases."""
    gate = manifest.parity
    backends: dict[str, dict[str, Any]] = {}
    for check in gate.checks:
        if check.graph != "decoder":
            continue
        entry = backends.setdefault(
            check.backend, {"logit_max_abs_diff": 0.0, "mask_agreement_min": 1.0, "passed": True}
        )
        if check.max_abs_diff is not None:
            entry["logit_max_abs_diff"] = max(entry["logit_max_abs_diff"], check.max_abs_diff)
        if check.mask_agreement is not None:
            entry["mask_agreement_min"] = min(entry["mask_agreement_min"], check.mask_agreement)
        entry["passed"] = entry["passed"] and check.passed
    return {"passed": gate.passed, "sizes": list(gate.sizes), "abs_tolerance": gate.abs_tolerance, "decoder": backends}


def _runtime_start(encoder: Encoder, decoder: Decoder, key: tuple[str, str]) -> Callable[..., accuracy.LogitsFn]:
    def start(image: np.ndarray, cache: dict[Any, Any]) -> accuracy.LogitsFn:
        if key not in cache:
            cache[key] = encoder.encode(image)
        return accuracy.runtime_logits(decoder, cache[key])

    return start
