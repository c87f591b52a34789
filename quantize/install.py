"""Installing a quantized decoder into its export folder: files moved in, manifest rewritten last."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from interformer_edge.core.manifest import QuantizedGraph, artifact_names, with_quantized, write_manifest
from interformer_edge.runtime.backends import FORMAT_OF
from interformer_edge.runtime.export import Export, open_export

from .results import BackendOutcome
from .targets import get_target


def install_variant(
    export: Export,
    work: Path,
    outcomes: list[BackendOutcome],
    calib_record: dict[str, Any],
    variant: str,
) -> Export:
    """Move the passing files from ``work`` into the export folder and record them as the decoder's
    ``variant`` (``int8``); the manifest is rewritten last (atomically). Returns the export as it is now
    (the same one when no backend passed).

    Files of an earlier variant of that name are dropped from the manifest *before* being replaced, so
    that at no moment does the manifest describe a file that is being overwritten.
    """
    passing = [o for o in outcomes if o.passed]
    if not passing:
        return export
    root, manifest = export.root, export.manifest
    previous = [q for q in manifest.quantized if (q.graph, q.precision) == ("decoder", variant)]
    stale = {n for q in previous for fmt, name in q.files.items() for n in artifact_names(name, fmt)}
    if previous:
        manifest = replace(
            manifest,
            quantized=tuple(q for q in manifest.quantized if q not in previous),
            files=tuple(f for f in manifest.files if f.name not in stale),
        )
        write_manifest(manifest, root)
    files = {}
    moved = set()
    for outcome in passing:
        fmt = FORMAT_OF[outcome.backend]
        for name in artifact_names(outcome.file, fmt):
            if (work / name).is_file():
                os.replace(work / name, root / name)
                moved.add(name)
        files[fmt] = outcome.file
    for name in stale - moved:  # an earlier file of this variant that this run did not replace
        (root / name).unlink(missing_ok=True)
    target = get_target(calib_record["target"])
    quantized = QuantizedGraph(
        graph="decoder",
        precision=variant,
        files=files,
        calibration=calib_record,
        gates={o.backend: o.record() for o in outcomes},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        target=target.name,
        covers=target.covers,
    )
    write_manifest(with_quantized(manifest, quantized, root), root)
    return open_export(root, verify_hashes=False)


def record_gate(export: Export, variant: str, backend: str, record: dict[str, Any]) -> Export:
    """Add (or replace) ``gates[backend]`` of the decoder's installed ``variant``; the manifest is rewritten
    atomically. Returns the export as it is now."""
    manifest = export.manifest
    quantized = manifest.quantized_variant("decoder", variant)
    if quantized is None:
        raise ValueError(f"{export.root} has no {variant} decoder")
    updated = replace(quantized, gates={**quantized.gates, backend: record})
    manifest = replace(manifest, quantized=tuple(updated if q is quantized else q for q in manifest.quantized))
    write_manifest(manifest, export.root)
    return open_export(export.root, verify_hashes=False)
