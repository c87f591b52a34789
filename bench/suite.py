"""One benchmark run: plan the rows, then latency, memory and accuracy, into one JSON-able report dict.

>>> report = run_bench(BenchOptions(export_dir=Path("interformer_export"), ...), manifest)

Nothing here prints or writes files (the CLI does); ``progress`` gets one line per step.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import interformer_edge
from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.core.messages import first_line
from interformer_edge.core.preprocess import normalize_image
from interformer_edge.core.progress import Countdown, duration
from interformer_edge.core.spec import IMAGE_INPUT
from interformer_edge.core.timing import Stats, TimingPolicy, measure, measure_in_turn
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import InterFormerRuntimeError
from interformer_edge.runtime.features import ImageFeatures, model_id

from . import floor, memory
from .accuracy_report import accuracy_report
from .baseline import TorchBaseline, find_checkpoint, torch_problem
from .configs import PYTORCH, BenchConfig, openvino_facts, plan_configs
from .inputs import ClickCase, bench_photo, third_click
from .machine import machine_facts

PARTS: tuple[str, ...] = ("latency", "memory", "accuracy")
REPORT_FORMAT = "interformer-bench-report"
REPORT_VERSION = 1
Progress = Callable[[str], None]
# Untimed, before each timed decoder call of the latency phase: the previous call's threads (another
# runtime's pool) stop spinning, as they do between a user's clicks.
TURN_PAUSE_S = 0.01


@dataclass(frozen=True)
class BenchOptions:
    """What to measure; the CLI fills it from its flags (see ``interformer-bench --help``)."""

    export_dir: Path
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    threads: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]
    dataset: Path | None
    clicks: int
    limit: int | None
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    parts: tuple[str, ...] = PARTS
    baseline: bool = True
    emulated: str | None = None
    memory_clicks: int = 20
    static_shapes: bool = True
    command: str = ""

    def settings(self) -> dict[str, Any]:
        return {
            "export_dir": str(self.export_dir),
            "backends": list(self.backends),
            "precisions": list(self.precisions),
            "threads": list(self.threads),
            "sizes": [size_text(s) for s in self.sizes],
            "dataset": str(self.dataset) if self.dataset else None,
            "clicks": self.clicks,
            "limit": self.limit,
            "timing": self.timing.to_dict(),
            "turn_pause_s": TURN_PAUSE_S,
            "parts": list(self.parts),
            "baseline": self.baseline,
            "memory_clicks": self.memory_clicks,
            "static_shapes": self.static_shapes,
        }


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _torch_config() -> BenchConfig:
    return BenchConfig(PYTORCH, BASE_PRECISION, computes_in="f32")


def run_bench(options: BenchOptions, manifest: Manifest, progress: Progress | None = None) -> dict[str, Any]:
    """Everything the report holds (see :mod:`.report` for the layout)."""
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    say("machine facts")
    ov = openvino_facts() if "openvino" in options.backends else None
    configs, skipped = plan_configs(manifest, options.backends, options.precisions, ov)
    checkpoint, baseline_note = _baseline_checkpoint(manifest, options.baseline)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "tool": {"name": "interformer-bench", "version": interformer_edge.__version__, "command": options.command},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(options.emulated),
        "openvino": ov,
        "artifact": describe_artifact(manifest),
        "settings": options.settings(),
        "configs": [c.to_dict() for c in configs],
        "skipped": [s.to_dict() for s in skipped],
        "baseline": {
            "available": checkpoint is not None,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "note": baseline_note,
        },
        "seconds": {},
    }
    baseline = None
    if checkpoint is not None and "latency" in options.parts:
        say("loading the PyTorch eager baseline")
        baseline = TorchBaseline(checkpoint)

    failures: list[dict[str, Any]] = []
    phases = {
        "latency": lambda: latency_rows(
            options, manifest, latency_configs(configs, options.static_shapes), baseline, say, failures
        ),
        "memory": lambda: memory_rows(options, manifest, configs, checkpoint, say),
        "accuracy": lambda: accuracy_report(options, manifest, configs, say, failures),
    }
    for part, run in phases.items():
        if part not in options.parts:
            continue
        phase = time.perf_counter()
        try:
            report[part] = run()
        except Exception as err:  # keep what the other parts measured; the report says what broke
            failures.append({"part": part, "error": first_line(err, with_type=True)})
        report["seconds"][part] = round(time.perf_counter() - phase, 1)
        say(f"{part}: done in {duration(report['seconds'][part])}")
    failures += [
        {"part": "memory", **_name(row), "error": row["error"]} for row in report.get("memory", []) if "error" in row
    ]
    report["failures"] = failures
    if hasattr(os, "getloadavg"):  # the machine may be shared: how busy it was at the end, beside the start
        report["machine"]["load_average_end"] = list(os.getloadavg())
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return report


def latency_configs(configs: list[BenchConfig], static_shapes: bool) -> list[BenchConfig]:
    """The latency rows: each configuration, followed by its shape-specialised twin when asked for (memory and
    accuracy are the same computation, so they measure the dynamic decoder only)."""
    if not static_shapes:
        return configs
    return [c for config in configs for c in (config, replace(config, static=True))]


def _name(row: dict[str, Any]) -> dict[str, Any]:
    return {"backend": row["backend"], "precision": row["precision"], "static": row.get("static", False)}


def _baseline_checkpoint(manifest: Manifest, wanted: bool) -> tuple[Path | None, str]:
    if not wanted:
        return None, "disabled (--no-baseline)"
    problem = torch_problem()
    if problem:
        return None, problem
    return find_checkpoint(manifest)


def describe_artifact(manifest: Manifest) -> dict[str, Any]:
    """What was benchmarked: folder, model id, architecture, source checkpoint, variants, sizes."""
    arch = manifest.architecture
    return {
        "dir": str(manifest.root),
        "model_id": model_id(manifest),
        "architecture": arch.get("name", "?"),
        "uses_roi": manifest.zoom_in.uses_roi,
        "static_size": list(manifest.static_size) if manifest.static_size else None,
        "created": manifest.created,
        "manifest_format_version": manifest.format_version,
        "source_checkpoint": {"path": manifest.source_checkpoint.path, "sha256": manifest.source_checkpoint.sha256},
        "export_tools": manifest.tools,
        "export_parity_passed": manifest.parity.passed,
        "decoder_precisions": manifest.precisions("decoder"),
        "quantized": [
            {
                "graph": q.graph,
                "precision": q.precision,
                "files": q.files,
                "calibration": q.calibration,
                "gates": q.gates,
                "created": q.created,
                "target": q.target,
                "covers": list(q.covers),
            }
            for q in manifest.quantized
        ],
        "sizes": memory.artifact_sizes(manifest),
    }


# ---------------------------------------------------------------------------------------------- latency


@dataclass
class _Timed:
    """One latency row waiting for its decoder timing: what is known of it, and the timed call."""

    config: BenchConfig
    size: tuple[int, int]
    encoder: Stats
    load_s: float | None
    encoder_shared_with: str | None
    click: Callable[[], object]


def latency_rows(
    options: BenchOptions,
    manifest: Manifest,
    configs: list[BenchConfig],
    baseline: TorchBaseline | None,
    say: Progress,
    failures: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per configuration × threads × size: encoder per image and decoder per click, plus the
    speed-up against the PyTorch eager row of the same size and threads.

    Per thread count, every configuration is loaded and its encoder timed; then, per size, the decoders of
    all configurations are timed taking turns (:func:`~interformer_edge.core.timing.measure_in_turn`), so
    that the rows one compares saw the same machine (it may be shared); the GEMMs that give the floors'
    peaks (:func:`.floor.peak_probes`) take turns with them. PyTorch eager is timed after them on its own
    and warm, as it usually runs, so that taking turns (cold caches) cannot flatter the speed-ups. A
    configuration that fails to load is listed in ``failures`` and the others go on."""
    photos = {size: bench_photo(size) for size in options.sizes}
    cases: dict[tuple[int, int], ClickCase] = {}
    encoder_stats: dict[tuple[Any, ...], tuple[Stats, str]] = {}  # (encoder key, threads, size) → stats, first row
    features: dict[tuple[Any, ...], ImageFeatures] = {}  # (encoder key, size) → the photo's features
    click_inputs: dict[tuple[int, int], dict[str, np.ndarray]] = {}  # size → the timed click's decoder inputs
    rows = []
    peaks: dict[tuple[int, str], float] = {}  # (threads, precision) → GFLOP/s, the probes' fastest runs
    loads = len(configs) + (1 if baseline else 0)
    countdown = Countdown(len(options.threads) * (loads + len(options.sizes)))
    done = 0  # units begun: loading one configuration at one thread count, or timing the decoders of one size
    for threads in options.threads:
        pending: list[_Timed] = []
        for config in configs:
            say(f"latency {countdown(done)}: {config.name}, {threads} thread(s): loading, timing the encoder")
            done += 1
            started = time.perf_counter()
            try:
                encoder = Encoder(
                    manifest.root, config.backend, threads, config.hint, manifest=manifest, max_side=0
                )  # the sizes asked for, never shrunk
                decoder = Decoder(
                    manifest.root,
                    config.backend,
                    threads,
                    config.hint,
                    manifest=manifest,
                    variant=config.variant,
                    static_shapes=config.static,
                )
            except InterFormerRuntimeError as err:
                failures.append({"part": "latency", **config.to_dict(), "threads": threads, "error": str(err)})
                continue
            load_s = time.perf_counter() - started
            for size in options.sizes:
                key = (*config.encoder_key, threads, size)
                shared_with = None
                if key in encoder_stats:
                    enc, shared_with = encoder_stats[key]
                else:
                    image = encoder.prepare(photos[size], size, size)
                    # Per-image work: the encoder and the click side's context (both once per image).
                    enc = measure(
                        lambda e=encoder, d=decoder, x=image: d.context.run(e.graph.run({IMAGE_INPUT: x})),
                        options.timing,
                    )
                    encoder_stats[key] = (enc, config.precision)
                if (config.encoder_key, size) not in features:
                    features[config.encoder_key, size] = encoder.encode(photos[size])
                feats = features[config.encoder_key, size]
                if size not in cases:  # the first row fixes the click every row times
                    cases[size] = third_click(decoder, feats)
                case = cases[size]
                feed = decoder.image_inputs(feats)
                if size not in click_inputs:
                    click_inputs[size] = decoder.graph_inputs(feed, case.ref_label, case.roi)
                click = partial(decoder.run, feed, case.ref_label, case.roi)
                pending.append(_Timed(config, size, enc, load_s, shared_with, click))
            del encoder  # the decoder stays loaded, in its rows' timed calls
        needed = {floor_precision(t.config.to_dict()) for t in pending} | ({"fp32"} if baseline else set())
        probes = _peak_probes(manifest, threads, sorted(p for p in needed if p is not None), failures)
        # A peak is the fastest run: a quarter of the rows' budget (at least their runs) finds it.
        probe_timing = replace(options.timing, budget_s=options.timing.budget_s / 4)
        for size in options.sizes:
            timed = [t for t in pending if t.size == size]
            say(
                f"latency {countdown(done)}: {len(timed)} decoders at {threads} thread(s), {size_text(size)}, "
                f"timed in turn{' with the peak GEMMs' if probes else ''}"
            )
            done += 1
            calls: dict[Any, Callable[[], object]] = {**dict(enumerate(t.click for t in timed)), **probes}
            stats = measure_in_turn(calls, options.timing, TURN_PAUSE_S, dict.fromkeys(probes, probe_timing))
            for index, t in enumerate(timed):
                rows.append(_row(t.config, threads, size, t.encoder, stats[index], t.load_s, t.encoder_shared_with))
            for key in probes:
                best = floor.gflops(stats[key].min_ms / 1e3)
                peaks[threads, key[0]] = max(best, peaks.get((threads, key[0]), 0.0))
        del pending, probes  # the decoders, the GEMMs and their thread pools go before the baseline runs
        gc.collect()
        if baseline is not None:
            baseline.set_threads(threads)
            say(f"latency {countdown(done)}: pytorch eager, {threads} thread(s)")
            done += 1
            pre = manifest.preprocessing
            for size in options.sizes:
                image = normalize_image(photos[size], pre.mean, pre.std, pre.size_divisor, pre.pad_value)
                enc = measure(lambda x=image: baseline.encode(x), options.timing)
                case = cases.get(size) or ClickCase(np.full((1, 1, *size), 2, dtype=np.uint8), None)
                ref, roi = baseline.decode_input(case.ref_label, case.roi)
                dec = measure(partial(baseline.decode, baseline.encode(image), ref, roi), options.timing)
                rows.append(_row(_torch_config(), threads, size, enc, dec, None, None))
    # The report lists rows by configuration, then threads, then size, as they were planned.
    order = {(c.backend, c.precision, c.static): i for i, c in enumerate([*configs, _torch_config()])}
    rows.sort(key=lambda r: (order[r["backend"], r["precision"], r["static"]], options.threads.index(r["threads"])))
    _add_speedups(rows)
    try:
        _add_floors(rows, manifest, click_inputs, peaks, say)
    except Exception as err:  # the timings stand without their floor
        failures.append({"part": "latency", "step": "floor", "error": first_line(err, with_type=True)})
    return rows


def _peak_probes(
    manifest: Manifest, threads: int, precisions: list[str], failures: list[dict[str, Any]]
) -> dict[tuple[str, int], Callable[[], object]]:
    """The GEMMs of :func:`.floor.peak_probes` for ``precisions`` at ``threads``, keyed ``(precision, i)``;
    none where floors cannot be measured, and a precision whose GEMM cannot be built is listed in
    ``failures`` (its rows get no floor)."""
    if not floor.available(manifest):
        return {}
    probes: dict[tuple[str, int], Callable[[], object]] = {}
    for precision in precisions:
        try:
            built = floor.peak_probes(threads, precision)
        except Exception as err:  # the timings stand without this floor
            failures.append(
                {"part": "latency", "step": "floor", "threads": threads, "error": first_line(err, with_type=True)}
            )
            continue
        probes.update({(precision, i): probe for i, probe in enumerate(built)})
    return probes


def floor_precision(row: dict[str, Any]) -> str | None:
    """Which measured peak bounds a row: ``int8`` for INT8 decoders, ``fp32`` / ``bf16`` for float compute in
    that type, else None."""
    if row["variant"] == "int8":
        return "int8"
    return {"f32": "fp32", "bf16": "bf16"}.get(row["computes_in"])


def _add_floors(
    rows: list[dict[str, Any]],
    manifest: Manifest,
    click_inputs: dict[tuple[int, int], dict[str, Any]],
    peaks: dict[tuple[int, str], float],
    say: Progress,
) -> None:
    """``floor``: the row's decoder FLOPs, the host's peak measured with the decoders (``peaks``, GFLOP/s by
    threads and precision) and the efficiency (see :mod:`.floor`)."""
    if not floor.available(manifest) or not click_inputs:
        return
    onnx_path = manifest.graph_path("decoder", "onnx")
    say("floor: decoder FLOPs")
    flops = {size_text(size): floor.decoder_flops(onnx_path, inputs) for size, inputs in click_inputs.items()}
    for row in rows:
        precision = floor_precision(row)
        peak = peaks.get((row["threads"], precision)) if precision is not None else None
        row["floor"] = floor.floor_entry(flops.get(row["size"]), peak, row["decoder"]["p50_ms"])
        if row["floor"] is not None:
            row["floor"]["peak_precision"] = precision


def _row(
    config: BenchConfig,
    threads: int,
    size: tuple[int, int],
    enc: Stats,
    dec: Stats,
    load_s: float | None,
    shared_with: str | None,
) -> dict[str, Any]:
    return {
        **config.to_dict(),
        "threads": threads,
        "size": size_text(size),
        "encoder": enc.to_dict(),
        "decoder": dec.to_dict(),
        "encoder_shared_with": shared_with,
        "load_s": None if load_s is None else round(load_s, 3),
    }


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """``speedup_vs_pytorch``: PyTorch eager p50 / the row's p50, same size and threads, same run."""
    eager = {(r["size"], r["threads"]): r for r in rows if r["backend"] == PYTORCH}
    for row in rows:
        base = eager.get((row["size"], row["threads"]))
        row["speedup_vs_pytorch"] = (
            None
            if base is None
            else {
                graph: round(base[graph]["p50_ms"] / row[graph]["p50_ms"], 3) if row[graph]["p50_ms"] > 0 else None
                for graph in ("encoder", "decoder")
            }
        )


# ----------------------------------------------------------------------------------------------- memory


def memory_rows(
    options: BenchOptions, manifest: Manifest, configs: list[BenchConfig], checkpoint: Path | None, say: Progress
) -> list[dict[str, Any]]:
    """Peak RSS of a fresh process per configuration (at the largest thread count and the first size),
    with the bytes the configuration needs on disk."""
    threads, size = max(options.threads), options.sizes[0]
    rows: list[dict[str, Any]] = []
    probed = [*configs, *([_torch_config()] if checkpoint is not None else [])]
    countdown = Countdown(len(probed))
    for config in probed:
        say(
            f"memory {countdown(len(rows))}: {config.name} "
            f"(fresh process: load, encode {size_text(size)}, {options.memory_clicks} clicks)"
        )
        facts = memory.run_probe(Path(str(manifest.root)), config, threads, size, options.memory_clicks, checkpoint)
        rows.append(
            {
                **config.to_dict(),
                "threads": threads,
                "size": size_text(size),
                "disk_bytes": memory.deploy_bytes(manifest, config),
                **facts,
            }
        )
    return rows
