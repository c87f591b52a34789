"""The folder a plain ``interformer-bench`` measures: ``./interformer_export``, exported from the bundled
default checkpoint first if it does not exist (needs torch)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from interformer_edge.core.spec import MANIFEST_NAME

from .options import BadInputError

DEFAULT_EXPORT_DIR = Path("interformer_export")  # where a plain `interformer-export` writes


def export_folder(folder: Path | None, console: Console, quiet: bool) -> Path:
    """``folder`` when given; else the default export, made first if missing (said on ``console`` unless
    ``quiet``, with a status line while it runs). Raises :class:`~.options.BadInputError`."""
    if folder is not None:
        return folder
    folder = DEFAULT_EXPORT_DIR
    if folder.exists() and (folder / MANIFEST_NAME).exists():
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise BadInputError(f"{folder} exists but holds no {MANIFEST_NAME}; pass an export folder")
    try:
        from interformer_edge.export.pipeline import ExportError, ExportOptions, run_export
    except ImportError as err:
        raise BadInputError(
            f"no export at ./{folder} and torch is not installed ({err.name or err}) to make one: run "
            "interformer-export on a workstation and pass the folder it writes"
        ) from None
    if not quiet:
        console.print(f"no export at ./{folder}: exporting the bundled default model there first", highlight=False)
    try:
        with console.status("exporting the bundled default model…"):
            run_export(ExportOptions(out_dir=folder))
    except ExportError as err:
        raise BadInputError(f"exporting the bundled default model failed: {err}") from None
    return folder
