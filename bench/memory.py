"""Memory: peak RSS of a fresh process per row (see :mod:`.probe`), with the bytes the row needs on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from interformer_edge.core.progress import Countdown
from interformer_edge.core.sizes import size_text
from interformer_edge.core.typed_json import read_json
from interformer_edge.runtime.export import Export

from .artifact import deploy_bytes
from .configs import PYTORCH, PYTORCH_ROW, BenchConfig
from .measurements import MemoryRow, ProbeFacts
from .options import BenchOptions
from .steps import StepLine

PROBE_TIMEOUT_S = 1800  # emulated CPUs are ~100x slower; a probe that hangs longer than this is broken


def run_probe(
    export_dir: Path,
    config: BenchConfig,
    threads: int,
    size: tuple[int, int],
    clicks: int,
    checkpoint: Path | None = None,
) -> ProbeFacts | str:
    """Run the probe for ``config`` in a fresh interpreter: what it measured, or why it failed."""
    command = [
        sys.executable,
        "-m",
        "interformer_edge.bench.probe",
        str(export_dir),
        "--backend",
        config.backend,
        "--variant",
        config.variant,
        "--compute",
        config.compute,
        "--threads",
        str(threads),
        "--size",
        size_text(size),
        "--clicks",
        str(clicks),
    ]
    if config.backend == PYTORCH:
        command += ["--checkpoint", str(checkpoint)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"the probe did not finish within {PROBE_TIMEOUT_S} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"the probe failed: {detail}"
    return read_json(ProbeFacts, json.loads(lines[-1]))


def memory_rows(
    options: BenchOptions, export: Export, configs: list[BenchConfig], checkpoint: Path | None, say: StepLine
) -> list[MemoryRow]:
    """Peak RSS of a fresh process per row (at the largest thread count and the first size; PyTorch eager
    too when its ``checkpoint`` is there), with the bytes the row needs on disk."""
    threads, size = max(options.threads), options.sizes[0]
    rows: list[MemoryRow] = []
    probed = [*configs, *([PYTORCH_ROW] if checkpoint is not None else [])]
    countdown = Countdown(len(probed))
    for config in probed:
        say(
            f"memory {countdown(len(rows))}: {config.name} "
            f"(fresh process: load, encode {size_text(size)}, {options.memory_clicks} clicks)"
        )
        facts = run_probe(export.root, config, threads, size, options.memory_clicks, checkpoint)
        disk = deploy_bytes(export.manifest, config)
        if isinstance(facts, str):
            rows.append(MemoryRow(config, threads, size_text(size), disk, error=facts))
        else:
            rows.append(MemoryRow(config, threads, size_text(size), disk, facts))
    return rows
