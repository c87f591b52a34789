"""What every command line of the package shares: the app, exit statuses, the error line, the consoles.

>>> app = command_app()
>>> @app.command()
... def main(...) -> None:
...     fail("interformer-encode", "photos/ does not exist")   # one line on stderr, exit status 2

Exit statuses, the same in every command:

====  ================================================================================
0     done
1     done in part: some items failed (listed; what succeeded is kept), or a crash
2     bad input: nothing was done (arguments, files, model)
3     an accuracy gate failed (the export's parity gate, the INT8 gate)
130   interrupted (Ctrl-C); SIGTERM exits with 143
====  ================================================================================

An error is one line on stderr: ``<command>: error: <message>``; warnings likewise with ``warning:``.
Consoles for output and progress come from :func:`~.progress.cli_console` (the terminal's width on a
terminal, long unwrapped lines in a log file).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

from .messages import first_line

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_INTERRUPTED = 130


def command_app(**options: Any) -> typer.Typer:
    """A Typer app as every command builds it: no shell-completion flags, plain tracebacks, and click's own
    help layout, which wraps the help text under each option and stays readable in an 80-column terminal
    (rich's boxed table squeezes it into a narrow column beside long option names)."""
    settings = {"add_completion": False, "pretty_exceptions_enable": False, "rich_markup_mode": None}
    return typer.Typer(**{**settings, **options})


def error_line(command: str, message: object) -> str:
    """``<command>: error: <first line of message>``."""
    text = first_line(message) if isinstance(message, BaseException) else (str(message).strip().splitlines() or [""])[0]
    return f"{command}: error: {text}"


def warn(command: str, message: str) -> None:
    """``<command>: warning: <message>`` on stderr."""
    print(f"{command}: warning: {message}", file=sys.stderr, flush=True)


def fail(command: str, message: object, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print the error line on stderr and leave with ``status`` (default: bad input)."""
    print(error_line(command, message), file=sys.stderr, flush=True)
    raise typer.Exit(status)
