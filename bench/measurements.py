"""The measurements of ``report.json``: latency rows, memory rows, and what failed.

Each row carries its :class:`~.configs.BenchConfig` (flattened: the row's keys start with ``backend``,
``precision``, ``variant``, ``hint``, ``computes_in``, ``static``), then its numbers; see
:mod:`interformer_edge.core.typed_json` for how fields map to keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interformer_edge.core.timing import Stats
from interformer_edge.core.typed_json import ABSENT, FLAT, OMIT_NONE, Absent

from .configs import BenchConfig


@dataclass(frozen=True)
class Speedup:
    """PyTorch eager p50 / the row's p50 at the same size and threads, same run (None: a p50 of 0)."""

    encoder: float | None
    decoder: float | None


@dataclass(frozen=True)
class Floor:
    """A latency row's compute floor (see :mod:`.floor`): the decoder's GFLOP per click, the host's measured
    GEMM peak (GFLOP/s, of ``peak_precision`` at the row's threads), the time those FLOPs take at that peak
    and ``efficiency`` = floor / p50."""

    gflop: float
    peak_gflops: float
    floor_ms: float
    efficiency: float
    peak_precision: str


@dataclass(frozen=True)
class LatencyRow:
    """One row × threads × size: image side (encoder + click context, per image) and decoder per click, in
    ms. ``encoder_shared_with``: the label of the row whose identical encoder was timed for this one;
    ``load_s``: loading both (None for PyTorch eager). ``floor``: ``ABSENT``
    (:mod:`interformer_edge.core.typed_json`) when this run measured no floors, None when this row has none
    (no peak for its precision)."""

    config: BenchConfig = field(metadata=FLAT)
    threads: int
    size: str
    encoder: Stats
    decoder: Stats
    encoder_shared_with: str | None
    load_s: float | None
    speedup_vs_pytorch: Speedup | None = None
    floor: Floor | Absent | None = ABSENT

    @property
    def measured_floor(self) -> Floor | None:
        return None if self.floor is ABSENT else self.floor


@dataclass(frozen=True)
class ProbeFacts:
    """What the fresh-process memory probe (:mod:`.probe`) measured: RSS in bytes at its start (interpreter,
    numpy, the backend), after loading, after encoding one photo, after the clicks, and its peak; seconds
    to load and to encode; the mean click in ms."""

    clicks: int
    rss_baseline_bytes: int
    load_s: float
    rss_after_load_bytes: int
    encode_s: float
    rss_after_encode_bytes: int
    rss_after_clicks_bytes: int
    peak_rss_bytes: int
    click_ms_mean: float


@dataclass(frozen=True)
class MemoryRow:
    """One row's probe at one thread count and size, with the bytes it needs on disk (None for PyTorch);
    ``probe`` is None and ``error`` says why when the probe failed."""

    config: BenchConfig = field(metadata=FLAT)
    threads: int
    size: str
    disk_bytes: int | None
    probe: ProbeFacts | None = field(default=None, metadata=FLAT)
    error: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Something that failed while the rest was measured: the ``part``, the row (all of it; for a memory
    probe its name: backend, label, static), the ``step`` and ``threads`` where known, and the error."""

    part: str
    backend: str | None = field(default=None, metadata=OMIT_NONE)
    label: str | None = field(default=None, metadata={"key": "precision", "omit_none": True})
    variant: str | None = field(default=None, metadata=OMIT_NONE)
    compute: str | None = field(default=None, metadata={"key": "hint", "omit_none": True})
    computes_in: str | None = field(default=None, metadata=OMIT_NONE)
    static: bool | None = field(default=None, metadata=OMIT_NONE)
    step: str | None = field(default=None, metadata=OMIT_NONE)
    threads: int | None = field(default=None, metadata=OMIT_NONE)
    error: str

    @classmethod
    def of_row(cls, part: str, config: BenchConfig, error: str, threads: int | None = None) -> Failure:
        """A row that failed to load or run."""
        return cls(
            part=part,
            backend=config.backend,
            label=config.label,
            variant=config.variant,
            compute=config.compute,
            computes_in=config.computes_in,
            static=config.static,
            threads=threads,
            error=error,
        )

    @classmethod
    def of_probe(cls, row: MemoryRow) -> Failure:
        """A memory row whose probe failed."""
        config = row.config
        return cls(
            part="memory", backend=config.backend, label=config.label, static=config.static, error=row.error or ""
        )

    def text(self) -> str:
        """``latency: openvino int8, 2 threads: <error>``."""
        what = " ".join(v for v in (self.backend, self.label) if v is not None)
        what += " static" if self.static else ""
        threads = f", {self.threads} threads" if self.threads is not None else ""
        return f"{self.part}{': ' + what if what else ''}{threads}: {self.error}"
