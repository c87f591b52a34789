"""The latency part: per row × threads × size, the image side (encoder + click context) per image and the
decoder per click, the speed-up over PyTorch eager, and each decoder's compute floor."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from interformer_edge.core.messages import first_line
from interformer_edge.core.preprocess import normalize_image
from interformer_edge.core.progress import Countdown
from interformer_edge.core.sizes import size_text
from interformer_edge.core.spec import IMAGE_INPUT
from interformer_edge.core.timing import Stats, measure, measure_in_turn
from interformer_edge.runtime.errors import InterFormerRuntimeError
from interformer_edge.runtime.export import Export, RuntimeSettings
from interformer_edge.runtime.features import ImageFeatures

from . import floor
from .baseline import TorchBaseline
from .configs import PYTORCH, PYTORCH_ROW, QUANTIZED, BenchConfig, float_name
from .inputs import ClickCase, bench_photo, third_click
from .measurements import Failure, Floor, LatencyRow, Speedup
from .options import BenchOptions
from .steps import StepLine

# Untimed, before each timed decoder call of the latency phase: the previous call's threads (another
# runtime's pool) stop spinning, as they do between a user's clicks.
TURN_PAUSE_S = 0.01


@dataclass
class _Timed:
    """One latency row waiting for its decoder timing: what is known of it, and the timed call."""

    config: BenchConfig
    size: tuple[int, int]
    encoder: Stats
    load_s: float | None
    encoder_shared_with: str | None
    click: Callable[[], object]


def latency_configs(configs: list[BenchConfig], static_shapes: bool) -> list[BenchConfig]:
    """The latency rows: each configuration, followed by its shape-specialised twin when asked for (memory and
    accuracy are the same computation, so they measure the dynamic decoder only)."""
    if not static_shapes:
        return configs
    return [c for config in configs for c in (config, replace(config, static=True))]


def latency_rows(
    options: BenchOptions,
    export: Export,
    configs: list[BenchConfig],
    baseline: TorchBaseline | None,
    say: StepLine,
    failures: list[Failure],
) -> list[LatencyRow]:
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
    rows: list[LatencyRow] = []
    peaks: dict[tuple[int, str], float] = {}  # (threads, peak precision) → GFLOP/s, the probes' fastest runs
    loads = len(configs) + (1 if baseline else 0)
    countdown = Countdown(len(options.threads) * (loads + len(options.sizes)))
    done = 0  # units begun: loading one configuration at one thread count, or timing the decoders of one size
    for threads in options.threads:
        pending: list[_Timed] = []
        for config in configs:
            say(f"latency {countdown(done)}: {config.name}, {threads} thread(s): loading, timing the encoder")
            done += 1
            started = time.perf_counter()
            settings = RuntimeSettings(config.backend, threads, config.compute)
            try:
                encoder = export.encoder(settings, max_side=0)  # the sizes asked for, never shrunk
                decoder = export.decoder(settings, variant=config.variant, static_shapes=config.static)
            except InterFormerRuntimeError as err:
                failures.append(Failure.of_row("latency", config, str(err), threads))
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
                    encoder_stats[key] = (enc, config.label)
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
        needed = {floor_precision(t.config) for t in pending} | ({floor_precision(PYTORCH_ROW)} if baseline else set())
        probes = _peak_probes(export, threads, sorted(p for p in needed if p is not None), failures)
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
            pre = export.manifest.preprocessing
            for size in options.sizes:
                image = normalize_image(photos[size], pre.mean, pre.std, pre.size_divisor, pre.pad_value)
                enc = measure(lambda x=image: baseline.encode(x), options.timing)
                case = cases.get(size) or ClickCase(np.full((1, 1, *size), 2, dtype=np.uint8), None)
                ref, roi = baseline.decode_input(case.ref_label, case.roi)
                dec = measure(partial(baseline.decode, baseline.encode(image), ref, roi), options.timing)
                rows.append(_row(PYTORCH_ROW, threads, size, enc, dec, None, None))
    # The report lists rows by configuration, then threads, then size, as they were planned.
    order = {config: i for i, config in enumerate([*configs, PYTORCH_ROW])}
    rows.sort(key=lambda r: (order[r.config], options.threads.index(r.threads)))
    rows = with_speedups(rows)
    try:
        rows = _with_floors(rows, export, click_inputs, peaks, say)
    except Exception as err:  # the timings stand without their floor
        failures.append(Failure(part="latency", step="floor", error=first_line(err, with_type=True)))
    return rows


def _row(
    config: BenchConfig,
    threads: int,
    size: tuple[int, int],
    enc: Stats,
    dec: Stats,
    load_s: float | None,
    shared_with: str | None,
) -> LatencyRow:
    """A row with its statistics rounded as the report keeps them (speed-ups and floors use those)."""
    return LatencyRow(
        config,
        threads,
        size_text(size),
        Stats(**enc.to_dict()),
        Stats(**dec.to_dict()),
        shared_with,
        None if load_s is None else round(load_s, 3),
    )


def with_speedups(rows: list[LatencyRow]) -> list[LatencyRow]:
    """``speedup_vs_pytorch``: PyTorch eager p50 / the row's p50, same size and threads, same run."""
    eager = {(r.size, r.threads): r for r in rows if r.config.backend == PYTORCH}

    def ratio(base: Stats, row: Stats) -> float | None:
        return round(base.p50_ms / row.p50_ms, 3) if row.p50_ms > 0 else None

    out = []
    for row in rows:
        base = eager.get((row.size, row.threads))
        speedup = None if base is None else Speedup(ratio(base.encoder, row.encoder), ratio(base.decoder, row.decoder))
        out.append(replace(row, speedup_vs_pytorch=speedup))
    return out


# ------------------------------------------------------------------------------------------------ floors


def floor_precision(config: BenchConfig) -> str | None:
    """Which measured peak (:data:`.floor.PEAK_PRECISIONS`) bounds a row: ``int8`` for INT8 decoders, else
    the type its float layers compute in, when a peak of it is measured (``fp32``, ``bf16``); else None."""
    if config.variant == QUANTIZED:
        return QUANTIZED
    name = float_name(config.computes_in)  # the peaks are named as the variants are: fp32, bf16
    return name if name in floor.PEAK_PRECISIONS else None


def _peak_probes(
    export: Export, threads: int, precisions: list[str], failures: list[Failure]
) -> dict[tuple[str, int], Callable[[], object]]:
    """The GEMMs of :func:`.floor.peak_probes` for ``precisions`` at ``threads``, keyed ``(precision, i)``;
    none where floors cannot be measured, and a precision whose GEMM cannot be built is listed in
    ``failures`` (its rows get no floor)."""
    if not floor.available(export.manifest):
        return {}
    probes: dict[tuple[str, int], Callable[[], object]] = {}
    for precision in precisions:
        try:
            built = floor.peak_probes(threads, precision)
        except Exception as err:  # the timings stand without this floor
            failures.append(
                Failure(part="latency", step="floor", threads=threads, error=first_line(err, with_type=True))
            )
            continue
        probes.update({(precision, i): probe for i, probe in enumerate(built)})
    return probes


def _with_floors(
    rows: list[LatencyRow],
    export: Export,
    click_inputs: dict[tuple[int, int], dict[str, Any]],
    peaks: dict[tuple[int, str], float],
    say: StepLine,
) -> list[LatencyRow]:
    """Each row with its ``floor``: the decoder's FLOPs, the host's peak measured with the decoders (``peaks``,
    GFLOP/s by threads and precision) and the efficiency (see :mod:`.floor`); the rows as they are when
    floors cannot be measured here."""
    if not floor.available(export.manifest) or not click_inputs:
        return rows
    onnx_path = export.manifest.graph_path("decoder", "onnx")
    say("floor: decoder FLOPs")
    flops = {size_text(size): floor.decoder_flops(onnx_path, inputs) for size, inputs in click_inputs.items()}
    out = []
    for row in rows:
        precision = floor_precision(row.config)
        peak = peaks.get((row.threads, precision)) if precision is not None else None
        entry = floor.floor_entry(flops.get(row.size), peak, row.decoder.p50_ms)
        found = None if entry is None or precision is None else Floor(**entry, peak_precision=precision)
        out.append(replace(row, floor=found))
    return out
