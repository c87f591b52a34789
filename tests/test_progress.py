"""Progress where nobody watches a terminal (a log file, CI): plain lines at steps, a countdown with the time
left, and errors kept on one line."""

from __future__ import annotations

import io
from pathlib import Path

from encode_helpers import image_folder
from rich.console import Console
from typer.testing import CliRunner

from interformer_edge.core.progress import Countdown, ProgressReporter
from interformer_edge.runtime import cli as encode_cli


def test_progress_prints_lines_when_not_on_a_terminal() -> None:
    buffer = io.StringIO()
    now = [0.0]
    console = Console(file=buffer, width=40, force_terminal=False)
    with ProgressReporter(console, percent_step=25, interval=1000, clock=lambda: now[0]) as progress:
        tick = progress.step("simulating calibration click sessions", 8)
        for done in range(1, 9):
            now[0] += 10
            tick(done)
        progress.note("an error message much longer than forty columns stays on one line in a log file")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "simulating calibration click sessions: started (8 to do)"
    assert lines[1] == "simulating calibration click sessions: 2/8 (25 %), 20 s elapsed, about 1 min 00 s left"
    assert [line.split(": ")[1].split(" (")[0] for line in lines[1:4]] == ["2/8", "4/8", "6/8"]
    assert lines[4] == "simulating calibration click sessions: done 8/8 in 1 min 20 s"
    assert lines[5].startswith("an error message") and lines[5].endswith("in a log file") and len(lines) == 6


def test_a_countdown_gives_position_and_time_left() -> None:
    now = [100.0]
    countdown = Countdown(4, clock=lambda: now[0])
    assert countdown(0) == "1/4"  # nothing to estimate from yet
    now[0] += 10
    assert countdown(1) == "2/4, about 30 s left"
    now[0] += 50
    assert countdown(3) == "4/4, about 20 s left"


def test_encode_output_in_a_log_has_progress_lines_and_unwrapped_errors(light_export: Path, tmp_path: Path) -> None:
    folder, store = image_folder(tmp_path, 3, 24), tmp_path / "store"
    (folder / ("broken_" + "x" * 90 + ".png")).write_bytes(b"not a png")
    result = CliRunner().invoke(
        encode_cli.app, ["encode", str(folder), "--model", str(light_export), "--out", str(store), "--threads", "1"]
    )
    assert result.exit_code == encode_cli.EXIT_FAILURES
    assert "encoding: started (4 to do)" in result.stderr and "encoding: done 4/4 in" in result.stderr
    failure = next(line for line in result.stderr.splitlines() if line.startswith("failed broken_"))
    assert "cannot identify image file" in failure
    assert len(failure) > 120  # one line, not wrapped at 80 columns
