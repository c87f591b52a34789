"""The benchmark as a Python API: options → run → result.

>>> from interformer_edge.bench.options import BenchOptions
>>> from interformer_edge.runtime.export import open_export
>>> options = BenchOptions(export=open_export("interformer_export"), backends=("onnxruntime",),
...                        rows=("fp32", "int8"), threads=(2,), sizes=((512, 512),), parts=("latency",),
...                        out=Path("bench_out"))
>>> result = run_benchmark(options)          # result.report: report.json as types; result.files
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from interformer_edge.core.atomic import write_atomic

from .configs import BenchPlan
from .headline import headline
from .markdown import to_markdown
from .options import BenchOptions, plan_rows
from .plots import write_plots
from .report_model import Report, report_json
from .result import BenchResult
from .steps import StepLine, silent
from .suite import run_suite

REPORT_JSON, REPORT_MD = "report.json", "report.md"


def run_benchmark(options: BenchOptions, plan: BenchPlan | None = None, say: StepLine = silent) -> BenchResult:
    """Measure what ``options`` ask for and, with ``options.out``, write ``report.json``, ``report.md`` and the
    plots there. ``plan``: the rows, when already decided (default: :func:`~.options.plan_rows`, which
    raises :class:`~.options.BadInputError` when none exists here); ``say``: one line per step."""
    report = run_suite(options, plan or plan_rows(options), say)
    report = replace(report, headline=headline(report))
    if options.out is None:
        return BenchResult(report)
    return write_report(report, options.out)


def write_report(report: Report, out: Path) -> BenchResult:
    """Write ``report.json``, ``report.md`` and the plots into ``out`` (created; those files replaced); the
    report as written lists them in ``outputs`` (and why there are no plots in ``notes``)."""
    out.mkdir(parents=True, exist_ok=True)
    plots, note = write_plots(report, out)
    if note:
        report = replace(report, notes=[*(report.notes or []), note])
    report = replace(report, outputs=[REPORT_JSON, REPORT_MD, *plots])
    write_atomic(out / REPORT_JSON, report_json(report))
    write_atomic(out / REPORT_MD, to_markdown(report, plots))
    return BenchResult(report, tuple(out / name for name in report.outputs))
