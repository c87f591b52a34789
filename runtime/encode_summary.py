"""The summary of an encode run as ``interformer-encode encode`` prints it: a table, then the failed images."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .encode_run import EncodeResult


def summary_table(result: EncodeResult) -> Table:
    """Counts, wall time and rates of ``result``; per-worker rates when several workers encoded."""
    counts = result.counts
    encode_time = sum(o.seconds for o in result.outcomes if o.status == "encoded")
    reason = f" by {result.interrupted}" if result.interrupted else ""
    table = Table(
        title=f"interrupted{reason}: partial summary" if result.interrupted else "summary",
        title_justify="left",
        show_header=False,
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("encoded", str(counts["encoded"]))
    table.add_row("skipped (up to date)", str(counts["skipped"]))
    if counts["busy"]:
        table.add_row("left to another run (being encoded there)", str(counts["busy"]))
    table.add_row("failed", f"[red]{counts['failed']}[/]" if counts["failed"] else "0")
    if result.interrupted:
        table.add_row("not started", str(result.not_started))
    table.add_row("wall time", f"{result.seconds:.1f} s")
    if counts["encoded"]:
        table.add_row("per image (in a worker)", f"{encode_time / counts['encoded']:.2f} s")
        table.add_row("images/s (encoded, wall time)", f"{counts['encoded'] / max(result.seconds, 1e-9):.2f}")
    by_worker: dict[str, list[float]] = {}
    for outcome in result.outcomes:
        if outcome.status == "encoded" and outcome.worker:
            by_worker.setdefault(outcome.worker, []).append(outcome.seconds)
    if len(by_worker) > 1:  # how evenly the work spread, and each worker's rate while it was encoding
        for worker, times in sorted(by_worker.items()):
            table.add_row(f"  {worker}", f"{len(times)} images, {len(times) / max(sum(times), 1e-9):.2f} images/s")
    return table


def print_summary(result: EncodeResult, console: Console) -> None:
    """The table, then one line per failed image (``failed: NAME: why``)."""
    console.print(summary_table(result))
    for outcome in result.failed:
        console.print(f"failed: {outcome.name}: {outcome.message}", markup=False, highlight=False)
