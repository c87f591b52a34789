"""``interformer-train``: train the bundled default model on synthetic data, and evaluate checkpoints."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer

from interformer_edge.core.atomic import write_atomic
from interformer_edge.core.cli_kit import EXIT_BAD_INPUT, command_app, fail
from interformer_edge.core.progress import ProgressReporter, cli_console

from .trainer import LOG_NAME, Trainer, TrainSettings

COMMAND = "interformer-train"

app = command_app(
    no_args_is_help=True,
    help="Train a small InterFormer on CPU with synthetic data, or evaluate a checkpoint.",
)


# Defaults of the train command: the settings of the bundled model's first stage (one source of truth; the
# later stages pass --init-from, --lr, --warmup and --seed, see the README's model card).
_DEFAULT = TrainSettings()


@app.command(short_help="Train on synthetic data; resumable from RUN_DIR/last.pth.")
def train(
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Folder for logs and checkpoints; an existing run resumes.")
    ] = Path("runs/default"),
    iterations: Annotated[int, typer.Option(help="Optimisation steps (the schedule decays to zero here).")] = (
        _DEFAULT.iterations
    ),
    batch_size: Annotated[int, typer.Option(help="Images per step at the smallest side (fewer for larger ones).")] = (
        _DEFAULT.batch_size
    ),
    min_side: Annotated[int, typer.Option(help="Smallest training side (a multiple of 32).")] = _DEFAULT.min_side,
    max_side: Annotated[int, typer.Option(help="Largest training side (a multiple of 32).")] = _DEFAULT.max_side,
    seed: Annotated[int, typer.Option(help="Seed of data, clicks and initialisation; same seed, same run.")] = (
        _DEFAULT.seed
    ),
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads.")] = _DEFAULT.threads,
    time_limit_min: Annotated[float, typer.Option(help="Stop early (and save) after these minutes; 0: never.")] = (
        _DEFAULT.time_limit_min
    ),
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW; linear warm-up, then linear decay).")] = (
        _DEFAULT.lr
    ),
    warmup: Annotated[int, typer.Option(help="Warm-up steps of the learning rate.")] = _DEFAULT.warmup,
    click_gamma: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help=(
                "Extra simulated clicks per step, P(k) ~ click_gamma**k: lower values train the first click more "
                "often (0.6: 40% of steps; 0.4: 60%; 0: first click only)."
            ),
        ),
    ] = _DEFAULT.click_gamma,
    bf16: Annotated[
        bool, typer.Option(help="bfloat16 autocast of the forward passes (about 1.4x faster per step on AVX512-BF16).")
    ] = _DEFAULT.bf16,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's weights (e.g. a finished run) instead of random.")
    ] = None,
) -> None:
    """Train; progress goes to stdout and RUN_DIR/train.log; resumable from RUN_DIR/last.pth."""
    settings = replace(
        _DEFAULT,
        iterations=iterations,
        batch_size=batch_size,
        min_side=min_side,
        max_side=max_side,
        seed=seed,
        threads=threads,
        time_limit_min=time_limit_min,
        lr=lr,
        warmup=warmup,
        bf16=bf16,
        click_gamma=click_gamma,
        init_from=str(init_from) if init_from else "",
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = (run_dir / LOG_NAME).open("a")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    log("settings " + json.dumps(asdict(settings)))
    path = Trainer(settings, run_dir, log).run()
    log(f"wrote {path}")


@app.command(short_help="NoC@85/90 and mIoU@1/3/5 of a checkpoint, in PyTorch.")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to evaluate (official layout).")],
    dataset: Annotated[Path | None, typer.Option(help="GrabCut-layout folder; default: bundled held-out set.")] = None,
    clicks: Annotated[int, typer.Option(help="Clicks per object (standard protocol: 20).")] = 20,
    limit: Annotated[int, typer.Option(help="Evaluate only the first N objects (0: all).")] = 0,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads.")] = 2,
    json_out: Annotated[Path | None, typer.Option(help="Also write the summary as JSON here.")] = None,
) -> None:
    """NoC@85/90 and mIoU@1/3/5 of a checkpoint with the automatic clicker, in PyTorch."""
    import torch

    from interformer_edge.assets import HELDOUT_DIR
    from interformer_edge.core.dataset import open_dataset
    from interformer_edge.core.evaluation import run_session, summarize
    from interformer_edge.models import CheckpointError, load_interformer
    from interformer_edge.models.predictor import TorchPredictor

    torch.set_num_threads(threads)
    try:
        model = load_interformer(checkpoint)
    except CheckpointError as err:
        fail(COMMAND, err, EXIT_BAD_INPUT)
    data = open_dataset(dataset or HELDOUT_DIR, limit=limit or None)
    results = []
    # Progress goes to stderr: stdout carries only the summary.
    with ProgressReporter(cli_console(stderr=True)) as progress:
        tick = progress.step("evaluating", len(data))
        for index, sample in enumerate(data):
            predictor = TorchPredictor(model, sample.image)
            results.append(run_session(predictor, sample.mask, clicks, zoom_in=model.cfg.has_refine))
            tick(index + 1)
    for problem in data.problems:
        typer.echo(f"skipped {problem}", err=True)
    summary = summarize(results)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "iou_curve"}, indent=1))
    if json_out:
        write_atomic(json_out, json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(app())
