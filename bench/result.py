"""What :func:`~.run.run_benchmark` returns: the report, the files written, and the exit status it means."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from interformer_edge.core.cli_kit import EXIT_FAILURES, EXIT_OK

from .report_model import Report


@dataclass(frozen=True)
class BenchResult:
    """``report``: everything measured (``report.json``'s content); ``files``: what was written, report.json
    first (none without an output folder)."""

    report: Report
    files: tuple[Path, ...] = ()

    @property
    def exit_status(self) -> int:
        """:data:`~interformer_edge.core.cli_kit.EXIT_FAILURES` when some row or part failed (the report says
        which), else :data:`~interformer_edge.core.cli_kit.EXIT_OK`."""
        return EXIT_FAILURES if self.report.failures else EXIT_OK
