"""``interformer-quantize``: command-line entry point (being built; see the README's roadmap)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, help="interformer-quantize: not implemented yet in this version.")


@app.command()
def main() -> None:
    """Not implemented yet: exits with status 2."""
    typer.echo("interformer-quantize is not implemented yet in this version", err=True)
    raise typer.Exit(2)
