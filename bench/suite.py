"""One benchmark run: latency, memory and accuracy of the planned rows, into one :class:`~.report_model.Report`.

>>> report = run_suite(options, plan_rows(options))

Nothing here prints or writes files; ``say`` gets one line per step (:mod:`.steps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import interformer_edge
from interformer_edge.core.messages import first_line
from interformer_edge.core.progress import duration

from .accuracy_report import accuracy_report
from .artifact import describe_artifact
from .baseline import TorchBaseline, find_checkpoint, torch_problem
from .configs import BenchPlan
from .latency import TURN_PAUSE_S, latency_configs, latency_rows
from .machine import load_average, machine_facts
from .measurements import Failure
from .memory import memory_rows
from .options import BenchOptions
from .report_model import BaselineFacts, Report, ReportSettings, ToolFacts
from .steps import StepLine, silent

TOOL = "interformer-bench"
T = TypeVar("T")


def run_suite(options: BenchOptions, plan: BenchPlan, say: StepLine = silent) -> Report:
    """Every part of ``options.parts`` for the rows of ``plan``; a part that fails is listed in the report's
    ``failures`` and the others go on. The report has no headline, notes or outputs yet (:mod:`.run`)."""
    started = time.perf_counter()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    say("machine facts")
    export, configs = options.export, plan.configs
    machine = machine_facts(options.emulated)
    artifact = describe_artifact(export)
    checkpoint, baseline_note = _baseline_checkpoint(options)
    baseline = None
    if checkpoint is not None and "latency" in options.parts:
        say("loading the PyTorch eager baseline")
        baseline = TorchBaseline(checkpoint)

    failures: list[Failure] = []
    seconds: dict[str, float] = {}

    def part(name: str, run: Callable[[], T]) -> T | None:
        """``run()`` if ``name`` is among the parts asked for; None when not, or when it failed (listed)."""
        if name not in options.parts:
            return None
        phase = time.perf_counter()
        result = None
        try:
            result = run()
        except Exception as err:  # keep what the other parts measured; the report says what broke
            failures.append(Failure(part=name, error=first_line(err, with_type=True)))
        seconds[name] = round(time.perf_counter() - phase, 1)
        say(f"{name}: done in {duration(seconds[name])}")
        return result

    rows = latency_configs(configs, options.static_shapes)
    latency = part("latency", lambda: latency_rows(options, export, rows, baseline, say, failures))
    memory = part("memory", lambda: memory_rows(options, export, configs, checkpoint, say))
    accuracy = part("accuracy", lambda: accuracy_report(options, export, configs, say, failures))
    failures += [Failure.of_probe(row) for row in memory or [] if row.error is not None]
    end_load = load_average()  # the machine may be shared: how busy it was at the end, beside the start
    seconds["total"] = round(time.perf_counter() - started, 1)
    return Report(
        tool=ToolFacts(TOOL, interformer_edge.__version__, options.command),
        created=created,
        machine=replace(machine, load_average_end=end_load),
        openvino=plan.openvino,
        artifact=artifact,
        settings=ReportSettings.of(options, TURN_PAUSE_S),
        configs=configs,
        skipped=plan.skipped,
        baseline=BaselineFacts(checkpoint is not None, str(checkpoint) if checkpoint else None, baseline_note),
        seconds=seconds,
        latency=latency,
        memory=memory,
        accuracy=accuracy,
        failures=failures,
    )


def _baseline_checkpoint(options: BenchOptions) -> tuple[Path | None, str]:
    if not options.baseline:
        return None, "disabled (--no-baseline)"
    problem = torch_problem()
    if problem:
        return None, problem
    return find_checkpoint(options.export.manifest)
