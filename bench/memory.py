"""Memory: peak RSS of a fresh process per configuration (see :mod:`.probe`), and artifact sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from interformer_edge.core.manifest import Manifest, artifact_names
from interformer_edge.runtime.backends import FORMAT_OF

from .configs import PYTORCH, BenchConfig

PROBE_TIMEOUT_S = 1800  # emulated CPUs are ~100x slower; a probe that hangs longer than this is broken


def run_probe(
    export_dir: Path,
    config: BenchConfig,
    threads: int,
    size: tuple[int, int],
    clicks: int,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run the probe for ``config`` in a fresh interpreter; its JSON facts, or ``{"error": ...}``."""
    command = [
        sys.executable,
        "-m",
        "interformer_edge.bench.probe",
        str(export_dir),
        "--backend",
        config.backend,
        "--variant",
        config.variant,
        "--hint",
        config.hint,
        "--threads",
        str(threads),
        "--size",
        f"{size[0]}x{size[1]}",
        "--clicks",
        str(clicks),
    ]
    if config.backend == PYTORCH:
        command += ["--checkpoint", str(checkpoint)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the probe did not finish within {PROBE_TIMEOUT_S} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": f"the probe failed: {detail}"}
    return json.loads(lines[-1])


def graph_bytes(manifest: Manifest, graph: str, fmt: str, precision: str) -> int | None:
    """Bytes on disk of one graph in one format and precision (``x.onnx`` + ``x.onnx.data``, ``x.xml`` + ``x.bin``)."""
    sizes = {f.name: f.size for f in manifest.files}
    files = manifest.files_of(graph, precision)
    if fmt not in files:
        return None
    return sum(sizes.get(name, 0) for name in artifact_names(files[fmt], fmt))


def artifact_sizes(manifest: Manifest) -> dict[str, Any]:
    """Every graph's size per format and precision, and the total a device needs per backend/precision."""
    listed = {f.name for f in manifest.files}
    graphs = []
    for role, precision, files in manifest.graph_files():
        for fmt in files:
            graphs.append(
                {
                    "graph": role,
                    "precision": precision,
                    "format": fmt,
                    "files": [n for n in artifact_names(files[fmt], fmt) if n in listed],
                    "bytes": graph_bytes(manifest, role, fmt, precision),
                }
            )
    return {"graphs": graphs, "total_bytes": sum(f.size for f in manifest.files)}


def deploy_bytes(manifest: Manifest, config: BenchConfig) -> int | None:
    """What a device running ``config`` needs on disk: the FP32 encoder plus the row's decoder (None for PyTorch)."""
    if config.backend == PYTORCH:
        return None
    fmt = FORMAT_OF[config.backend]
    encoder = graph_bytes(manifest, "encoder", fmt, "fp32")
    decoder = graph_bytes(manifest, "decoder", fmt, config.variant)
    return None if encoder is None or decoder is None else encoder + decoder
