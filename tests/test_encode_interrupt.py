"""Interrupting ``interformer-encode encode``: a first signal lets the work in hand finish, a second stops at
once; SIGTERM leaves no worker behind, no partial file, and a summary of what was stored."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from encode_helpers import encode_command, image_folder, summary_rows

from interformer_edge.runtime.features import load_features


def test_a_first_interrupt_lets_the_work_in_hand_finish_a_second_stops_at_once() -> None:
    """In a fresh interpreter (signal handlers belong to the main thread, which a test worker may not be)."""
    code = """
import os, signal
from interformer_edge.runtime.signals import Terminated, finish_in_hand
done = []
try:
    with finish_in_hand():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("finished")
except Terminated:
    done.append("terminated")
try:
    with finish_in_hand():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        done.append("not reached")
except KeyboardInterrupt:
    done.append("stopped")
print(" ".join(done))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["finished", "terminated", "stopped"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_encode_without_orphans_and_prints_a_summary(
    workers: int, light_export: Path, tmp_path: Path
) -> None:
    folder, store = image_folder(tmp_path, 40, 160), tmp_path / "store"
    command = encode_command(folder, light_export, store, "--workers", str(workers), "--batch", "1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        children |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        if len(list(store.glob("*.npz"))) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    stored = list(store.glob("*.npz"))
    if process.returncode == 128 + signal.SIGTERM:
        assert "interrupted by SIGTERM: partial summary" in stdout, stdout
        rows = summary_rows(stdout)
        assert int(rows["encoded"]) == len(stored) >= 2, "the summary must count every image that was stored"
        assert int(rows["not started"]) > 0
    else:  # finished before the signal (a very fast machine): the rest still holds
        assert process.returncode == 0, stderr
    assert len(children) >= (2 if workers == 2 else 0), "the two workers were never seen"
    deadline = time.monotonic() + 1  # the command joins its workers and the resource tracker before exiting
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) for pid in children):
        time.sleep(0.05)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, f"processes left behind: {alive}"
    assert not list(store.glob(".*")), "temporary or claim files left behind"
    for path in stored:
        load_features(path)
