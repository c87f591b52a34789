"""What a benchmark measures (:class:`BenchOptions`), and the checks that make it from the command line's
text (:class:`BenchFlags`), in the order a user would fix them. Each check raises :class:`BadInputError`
with one line; nothing is measured or written before all have passed."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from interformer_edge.core.manifest import Manifest, ManifestError
from interformer_edge.core.sizes import parse_size, size_text
from interformer_edge.core.spec import EVAL_MAX_CLICKS
from interformer_edge.core.timing import TimingPolicy
from interformer_edge.runtime.backends import installed_backends
from interformer_edge.runtime.export import Export, open_export

from .configs import BenchPlan, check_backends, default_rows, plan_bench, row_choices
from .machine import usable_cores

PARTS: tuple[str, ...] = ("latency", "memory", "accuracy")
# Accuracy objects by default: the first 20 of the bundled held-out set keep a full default bench of
# the bundled model (5 configurations with INT8, 20 clicks each) at about 3 minutes on 2 quiet cores
# and under 10 with a training job beside it; --limit 0 runs all 100.
DEFAULT_LIMIT = 20
DEFAULT_MEMORY_CLICKS = 20


class BadInputError(Exception):
    """A one-line reason to refuse the run before measuring anything."""


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """What to measure, checked (see ``interformer-bench --help`` for each).

    ``export``: the opened export; ``export_dir``: the folder as the user named it (the report's settings
    record it; default: ``export.root``). ``rows``: row labels (:mod:`.configs`). ``sizes``: ``(H, W)``
    image sizes for latency, the first also for memory. ``limit``: accuracy objects (None: all). ``out``:
    the folder :func:`~.run.run_benchmark` writes the report to (None: nothing written).
    """

    export: Export
    export_dir: Path | None = None
    backends: tuple[str, ...]
    rows: tuple[str, ...]
    threads: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]
    dataset: Path | None = None
    clicks: int = EVAL_MAX_CLICKS
    limit: int | None = DEFAULT_LIMIT
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    parts: tuple[str, ...] = PARTS
    baseline: bool = True
    emulated: str | None = None
    memory_clicks: int = DEFAULT_MEMORY_CLICKS
    static_shapes: bool = True
    command: str = ""
    out: Path | None = None


@dataclass(frozen=True, kw_only=True)
class BenchFlags:
    """The command line as typed: comma-separated lists still text, the export folder not yet opened
    (None: the default one)."""

    export_dir: Path | None
    backends: str | None
    rows: str | None
    threads: str | None
    sizes: str
    dataset: Path | None
    clicks: int
    limit: int
    timing: TimingPolicy
    memory_clicks: int
    parts: str
    baseline: bool
    emulated: str | None
    out: Path
    static_shapes: bool
    command: str


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_threads(text: str) -> tuple[int, ...]:
    values = split_list(text)
    if not values or not all(v.isdigit() and int(v) >= 1 for v in values):
        raise BadInputError(f"--threads {text!r}: expected positive integers such as 1,2,4")
    return tuple(dict.fromkeys(int(v) for v in values))


def parse_sizes(text: str, manifest: Manifest) -> tuple[tuple[int, int], ...]:
    """``"512x512,320x480"`` → sizes the export can run: multiples of its size divisor, within its
    maximum side, and only its own size for a static-size export."""
    pre = manifest.preprocessing
    sizes = []
    for part in split_list(text):
        try:
            size = parse_size(part, pre.size_divisor, pre.max_image_side)
        except ValueError as err:
            raise BadInputError(str(err)) from None
        if manifest.static_size is not None and size != manifest.static_size:
            raise BadInputError(
                f"size {part}: this is a static-size export; it only runs {size_text(manifest.static_size)}"
            )
        sizes.append(size)
    if not sizes:
        raise BadInputError("--sizes is empty")
    return tuple(dict.fromkeys(sizes))


def parse_rows(text: str | None, manifest: Manifest) -> tuple[str, ...]:
    """``"fp32,int8"`` → row labels this export can be asked for (None: the default rows)."""
    names = tuple(dict.fromkeys(split_list(text))) if text else tuple(default_rows(manifest))
    known = list(row_choices(manifest))
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise BadInputError(f"--rows {text!r}: unknown {', '.join(bad) or 'empty'}; choose from {', '.join(known)}")
    return names


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before a long run rather than after."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {out}: {probe} is not writable")


def default_dataset() -> Path | None:
    """The bundled held-out set, if installed."""
    try:
        from interformer_edge.assets import HELDOUT_DIR
    except ImportError:
        return None
    return Path(HELDOUT_DIR) if Path(HELDOUT_DIR, "img").is_dir() else None


def check_dataset(dataset: Path | None) -> Path:
    folder = dataset if dataset is not None else default_dataset()
    if folder is None:
        raise BadInputError(
            "no dataset: the bundled held-out set is missing; pass --dataset or drop accuracy from --parts"
        )
    if not (folder / "img").is_dir():
        raise BadInputError(
            f"--dataset {folder} is not a dataset folder (expected {folder / 'img'}, gt/, list/val.txt)"
        )
    return folder


def check_flags(flags: BenchFlags, export_folder: Callable[[Path | None], Path]) -> BenchOptions:
    """The options ``flags`` ask for, every flag and the export checked; ``export_folder`` gives the folder to
    open for ``flags.export_dir`` (which may be None: the default export, made if missing)."""
    parts = tuple(split_list(flags.parts))
    if not parts or any(p not in PARTS for p in parts):
        raise BadInputError(f"--parts {flags.parts!r}: choose from {', '.join(PARTS)}")
    threads = parse_threads(flags.threads) if flags.threads else tuple(dict.fromkeys((1, usable_cores())))
    installed = installed_backends()
    backends = tuple(split_list(flags.backends)) if flags.backends else tuple(installed)
    problem = check_backends(backends, installed) if backends else "no inference backend is installed"
    if problem:
        raise BadInputError(problem)
    check_writable(flags.out)
    dataset = check_dataset(flags.dataset) if "accuracy" in parts else None
    folder = export_folder(flags.export_dir)
    try:
        export = open_export(folder)
    except ManifestError as err:
        raise BadInputError(str(err)) from None
    sizes = parse_sizes(flags.sizes, export.manifest)
    rows = parse_rows(flags.rows, export.manifest)
    return BenchOptions(
        export=export,
        export_dir=folder,
        backends=backends,
        rows=rows,
        threads=threads,
        sizes=sizes,
        dataset=dataset,
        clicks=flags.clicks,
        limit=flags.limit or None,
        timing=flags.timing,
        parts=parts,
        baseline=flags.baseline,
        emulated=flags.emulated or None,
        memory_clicks=flags.memory_clicks,
        static_shapes=flags.static_shapes,
        command=flags.command,
        out=flags.out,
    )


def plan_rows(options: BenchOptions) -> BenchPlan:
    """The rows of ``options`` that exist here; refuses a benchmark with none."""
    plan = plan_bench(options.export.manifest, options.backends, options.rows)
    if not plan.configs:
        reasons = "; ".join(f"{s.backend} {s.label}: {s.reason}" for s in plan.skipped)
        raise BadInputError(f"nothing to benchmark ({reasons})")
    return plan
