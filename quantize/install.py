"""Installing a quantized decoder into its export folder: files moved in, manifest rewritten last."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interformer_edge.core.manifest import (
    Manifest,
    QuantizedGraph,
    artifact_names,
    load_manifest,
    with_quantized,
    write_manifest,
)
from interformer_edge.runtime.backends import FORMAT_OF

from .targets import get_target

if TYPE_CHECKING:
    from .pipeline import BackendOutcome


def install_variant(
    export_dir: Path,
    work: Path,
    manifest: Manifest,
    outcomes: list[BackendOutcome],
    calib_record: dict[str, Any],
    precision: str,
) -> Manifest:
    """Move the passing files from ``work`` into ``export_dir`` and record them as the decoder's
    ``precision`` variant; the manifest is rewritten last (atomically).

    Files of an earlier INT8 variant are dropped from the manifest *before* being replaced, so that at
    no moment does the manifest describe a file that is being overwritten.
    """
    passing = [o for o in outcomes if o.passed]
    if not passing:
        return manifest
    previous = [q for q in manifest.quantized if (q.graph, q.precision) == ("decoder", precision)]
    if previous:
        stale = {n for q in previous for fmt, name in q.files.items() for n in artifact_names(name, fmt)}
        manifest = replace(
            manifest,
            quantized=tuple(q for q in manifest.quantized if q not in previous),
            files=tuple(f for f in manifest.files if f.name not in stale),
        )
        write_manifest(manifest, export_dir)
    files = {}
    moved = set()
    for outcome in passing:
        fmt = FORMAT_OF[outcome.backend]
        for name in artifact_names(outcome.file, fmt):
            if (work / name).is_file():
                os.replace(work / name, export_dir / name)
                moved.add(name)
        files[fmt] = outcome.file
    for name in (stale if previous else set()) - moved:  # an earlier INT8 file this run did not replace
        (export_dir / name).unlink(missing_ok=True)
    target = get_target(calib_record["target"])
    variant = QuantizedGraph(
        graph="decoder",
        precision=precision,
        files=files,
        calibration=calib_record,
        gates={o.backend: o.record() for o in outcomes},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        target=target.name,
        covers=target.covers,
    )
    updated = with_quantized(manifest, variant, export_dir)
    write_manifest(updated, export_dir)
    return load_manifest(export_dir, verify_hashes=False)
