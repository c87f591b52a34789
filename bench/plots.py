"""PNG plots of a report: latency per row, and IoU vs clicks per row.

matplotlib is optional (the ``plots`` extra): without it :func:`write_plots` draws nothing and says so.
Each PNG is rendered to a temporary file in the output folder and renamed into place.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from interformer_edge.core.atomic import atomic_target

from .configs import PYTORCH
from .report_model import Report
from .tables import row_name

LATENCY_PNG = "latency.png"
IOU_PNG = "iou_vs_clicks.png"
BACKEND_COLORS = {PYTORCH: "#888888", "onnxruntime": "#1f77b4"}
OTHER_COLOR = "#ff7f0e"


def matplotlib_problem() -> str | None:
    if importlib.util.find_spec("matplotlib") is None:
        return 'matplotlib is not installed (pip install ".[plots]"); no plots drawn'
    return None


def write_plots(report: Report, out_dir: Path) -> tuple[list[str], str | None]:
    """Draw the plots the report has data for into ``out_dir``: ``(file names, note or None)``."""
    problem = matplotlib_problem()
    if problem:
        return [], problem
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    written = []
    if report.latency:
        _save(_latency_figure(report), out_dir / LATENCY_PNG)
        written.append(LATENCY_PNG)
    if report.accuracy and any(r.quality.iou_curve for r in report.accuracy.rows):
        _save(_iou_figure(report), out_dir / IOU_PNG)
        written.append(IOU_PNG)
    return written, None


def _title(report: Report, what: str) -> str:
    machine = report.machine
    title = f"{what} — {machine.cpu_model} ({machine.architecture})"
    return f"{title}\n{machine.emulated}" if machine.emulated else title


def _latency_figure(report: Report) -> Any:
    """Horizontal bars: decoder per click and encoder per image (p50, whiskers to p90), one bar pair per row."""
    import matplotlib.pyplot as plt

    rows = report.latency or []
    labels = [f"{row_name(r.config)} · {r.threads}t · {r.size}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(rows) + 1.8), sharey=True)
    for ax, graph, unit in zip(axes, ("decoder", "encoder"), ("per click", "per image"), strict=True):
        stats = [r.encoder if graph == "encoder" else r.decoder for r in rows]
        p50 = [s.p50_ms for s in stats]
        p90 = [s.p90_ms - s.p50_ms for s in stats]
        colors = [BACKEND_COLORS.get(r.config.backend, OTHER_COLOR) for r in rows]
        ax.barh(range(len(rows)), p50, xerr=[[0] * len(rows), p90], color=colors, capsize=2)
        for y, (value, whisker) in enumerate(zip(p50, p90, strict=True)):
            ax.text(value + whisker, y, f"  {value:.1f}", va="center", fontsize=8)
        ax.set_xlabel(f"{graph} {unit}, ms (p50, bar to p90)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(_title(report, "interformer-bench latency"), fontsize=10)
    fig.tight_layout()
    return fig


def _iou_figure(report: Report) -> Any:
    """Mean IoU after each click, one line per configuration."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    acc = report.accuracy
    rows = acc.rows if acc else []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        curve = row.quality.iou_curve
        if curve:
            style = "--" if row.reference else "-"
            label = row_name(row.config) + (" (reference)" if row.reference else "")
            ax.plot(range(1, len(curve) + 1), curve, style, marker=".", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(report, f"IoU vs clicks, {acc.objects if acc else 0} objects"), fontsize=10)
    fig.tight_layout()
    return fig


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
