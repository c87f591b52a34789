"""Messages, running host commands, and the steps of a harness run with their summary table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn


class CommandError(Exception):
    """A command of a step failed; ``status`` becomes the step's exit status."""

    def __init__(self, status: int, what: str = "") -> None:
        super().__init__(what or f"exit {status}")
        self.status = status


class SignalReceivedError(Exception):
    """SIGINT or SIGTERM: the run stops after the current step (status 130 or 143)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"signal (exit {status})")
        self.status = status


def log(message: str) -> None:
    print(f"\033[1;34m[arm64]\033[0m {message}", flush=True)


def warn(message: str) -> None:
    print(f"\033[1;33m[arm64] warning:\033[0m {message}", file=sys.stderr, flush=True)


def die(message: str) -> NoReturn:
    print(f"\033[1;31m[arm64] error:\033[0m {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def raise_on_signals() -> None:
    """SIGINT and SIGTERM raise SignalReceivedError, so `finally` blocks (unmounting) run."""

    def handler(signum: int, _frame: object) -> None:
        raise SignalReceivedError(130 if signum == signal.SIGINT else 143)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(
    argv: Sequence[str],
    *,
    log_file: Path | None = None,
    tee: bool = False,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    tail: int = 0,
) -> int:
    """Run a command in its own process group; raise CommandError unless it exits 0.

    Output goes to the terminal, or to ``log_file`` (also to the terminal with ``tee``; ``tail``: the
    log's last lines go to stderr if it fails), or nowhere with ``quiet`` (stdout only). On SIGINT or
    SIGTERM the whole group gets the signal (then SIGKILL after 30 s).
    """
    sink = None
    if log_file is not None:
        sink = log_file.open("wb")
    elif quiet:
        sink = subprocess.DEVNULL
    sys.stdout.flush()
    piped = tee and log_file is not None
    out = subprocess.PIPE if piped else sink
    err = subprocess.STDOUT if log_file is not None else None
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        if piped:
            assert proc.stdout is not None and sink is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                sink.write(chunk)
        status = proc.wait()
    except BaseException as interrupt:
        stop_group(proc, signal.SIGTERM if getattr(interrupt, "status", 130) == 143 else signal.SIGINT)
        raise
    finally:
        if log_file is not None and sink is not None:
            sink.close()
    if status != 0:
        if tail and log_file is not None:
            lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-tail:]
            sys.stderr.write("".join(f"{line}\n" for line in lines))
        raise CommandError(status if status > 0 else 128 - status, " ".join(argv))
    return status


def stop_group(proc: subprocess.Popen, sig: int) -> None:
    """Send a signal to a command's process group; SIGKILL it if it has not ended after 30 s."""
    for current, wait in ((sig, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, current)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def disk_usage(path: str, one_file_system: bool = False) -> str:
    """``du -sh`` of a path ('?' if du fails)."""
    cmd = ["du", "-sh", *(["--one-file-system"] if one_file_system else []), path]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return result.stdout.split("\t")[0] if result.returncode == 0 and result.stdout else "?"


class Steps:
    """Runs named steps, records PASS/FAIL/SKIP with their times, prints the summary table.

    A step's failure is recorded, never raised: callers decide whether it stops the run (setup) or
    not (checks). An interrupted step (SIGINT/SIGTERM) prints the summary and ends the run.
    """

    def __init__(self, describe: Callable[[], list[tuple[str, str]]]) -> None:
        self.describe = describe  # the facts under the table (mode, root, cpu, ...)
        self.lines: list[str] = []
        self.info: list[tuple[str, str]] = []
        self.failed = False
        self.last_status = 0
        self.start = time.monotonic()

    def run(self, name: str, func: Callable[[], object]) -> bool:
        log(f"── {name}")
        start = time.monotonic()
        try:
            func()
            status = 0
        except CommandError as err:
            status = err.status
        except SignalReceivedError as err:
            status = err.status
        except (OSError, ValueError, subprocess.SubprocessError):
            traceback.print_exc()
            status = 1
        took = round(time.monotonic() - start)
        self.last_status = status
        if status == 0:
            self.lines.append(f"{'PASS':<6} {name:<44} {took:>5}s")
        else:
            self.lines.append(f"{'FAIL':<6} {name:<44} {took:>5}s  (exit {status})")
            self.failed = True
            warn(f"step failed: {name} (exit {status})")
        if status in (130, 143):
            self.print_summary()
            print("\033[1;31m[arm64] error:\033[0m interrupted", file=sys.stderr, flush=True)
            raise SystemExit(status)
        return status == 0

    def skip(self, name: str, reason: str) -> None:
        self.lines.append(f"{'SKIP':<6} {name:<44} {'-':>6}  {reason}")

    def note(self, key: str, value: str) -> None:
        self.info.append((key, value))

    def abort_if_failed(self, message: str) -> None:
        if self.last_status != 0:
            self.print_summary()
            die(message)

    def print_summary(self) -> None:
        print()
        log("════════════════════════ summary ════════════════════════")
        for line in self.lines:
            print(f"  {line}")
        print()
        facts = [*self.describe(), ("total time", f"{round(time.monotonic() - self.start)} s"), *self.info]
        for key, value in facts:
            print(f"  {key:<22} {value}")
        if self.failed:
            log("RESULT: FAILED")
        else:
            log("RESULT: OK — the lean package works on emulated aarch64")


def run_interactive(argv: Sequence[str]) -> None:
    """An interactive command in the foreground (Ctrl-C belongs to it); its exit status is ignored."""
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        subprocess.run(argv, check=False)
    finally:
        signal.signal(signal.SIGINT, previous)
