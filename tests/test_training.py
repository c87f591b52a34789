"""Training pieces: loss, click simulation, a tiny deterministic, resumable run, and its command."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from interformer_edge.core.spec import REF_FOREGROUND
from interformer_edge.models import load_interformer
from interformer_edge.training.cli import app
from interformer_edge.training.losses import normalized_focal_loss
from interformer_edge.training.sessions import BatchSession, sample_num_clicks
from interformer_edge.training.trainer import (
    FINAL_NAME,
    RESUME_NAME,
    Trainer,
    TrainSettings,
    learning_rate,
    training_stages,
)


def test_focal_loss_rewards_confident_correct_logits() -> None:
    target = torch.zeros(1, 8, 8)
    target[:, 2:6, 2:6] = 1
    good = torch.stack([(1 - target) * 6 - 3, target * 6 - 3], dim=1)
    loss_good = normalized_focal_loss(good, target)
    loss_bad = normalized_focal_loss(-good, target)
    loss_unsure = normalized_focal_loss(torch.zeros_like(good), target)
    assert loss_good < loss_unsure < loss_bad


def test_focal_loss_gradient_points_to_the_target() -> None:
    target = torch.ones(2, 4, 4)
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    normalized_focal_loss(logits, target).backward()
    assert (logits.grad[:, 1] < 0).all() and (logits.grad[:, 0] > 0).all()


def test_number_of_simulated_clicks_decays_geometrically() -> None:
    rng = np.random.default_rng(0)
    counts = np.bincount([sample_num_clicks(rng, 20, 0.6) for _ in range(4000)], minlength=21)
    assert counts[0] > counts[1] > counts[2] > counts[3]
    assert abs(counts[1] / counts[0] - 0.6) < 0.1


def test_first_click_lands_inside_each_object() -> None:
    gts = np.zeros((3, 40, 40), dtype=bool)
    gts[0, 5:15, 5:15] = True
    gts[1, 20:39, 2:30] = True
    gts[2, 0:40, 30:40] = True
    session = BatchSession(gts, np.random.default_rng(1))
    for gt, clicks, ref in zip(gts, session.clicks, session.ref_labels, strict=True):
        (click,) = clicks
        assert click.is_positive and gt[click.y, click.x]
        assert ref[click.y, click.x] == REF_FOREGROUND
    preds = gts.copy()
    preds[0] = False  # sample 0 still wrong, others perfect
    session.update_with_prediction(preds)
    session.click(preds)
    assert len(session.clicks[0]) == 2 and len(session.clicks[1]) == 1


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    s = TrainSettings(iterations=100, warmup=10, lr=1e-3)
    assert learning_rate(s, 0) < learning_rate(s, 9) == 1e-3
    assert learning_rate(s, 55) < 1e-3
    assert learning_rate(s, 100) == 0.0


def tiny_settings(iterations: int) -> TrainSettings:
    return TrainSettings(
        iterations=iterations,
        batch_size=2,
        min_side=64,
        max_side=128,
        table_size=96,
        embed_dims=64,
        depth=1,
        warmup=1,
        save_every_s=1e9,
        time_limit_min=0,
    )


def test_tiny_run_is_deterministic_resumable_and_loadable(tmp_path: Path) -> None:
    straight = Trainer(tiny_settings(2), tmp_path / "a", log=lambda _: None)
    final = straight.run()
    Trainer(tiny_settings(2), tmp_path / "b", log=lambda _: None).run(stop_at=1)
    assert (tmp_path / "b" / RESUME_NAME).is_file()
    resumed = Trainer(tiny_settings(2), tmp_path / "b", log=lambda _: None)
    assert resumed.iteration == 1
    resumed.run()
    for (key, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    model = load_interformer(final)
    assert final.name == FINAL_NAME
    assert model.cfg.embed_dims == 64 and model.cfg.img_size == 96
    raw = torch.load(final, weights_only=True)
    assert set(raw) == {"meta", "state_dict"}
    state = raw["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert all(v.dtype == torch.int16 for k, v in state.items() if k.endswith("relative_position_index"))


def test_a_continued_run_records_every_stage(tmp_path: Path) -> None:
    first_settings = tiny_settings(1)
    first = Trainer(first_settings, tmp_path / "one", log=lambda _: None).run()
    second_settings = replace(tiny_settings(1), seed=3, lr=1e-4, init_from=str(first))
    second = Trainer(second_settings, tmp_path / "two", log=lambda _: None).run()
    stages = training_stages(second)
    assert [stage["settings"] for stage in stages] == [asdict(first_settings), asdict(second_settings)]
    assert [stage["iterations_done"] for stage in stages] == [1, 1]
    # Checkpoints without a record (official ones) have no stages.
    bare = tmp_path / "bare.pth"
    torch.save({"state_dict": torch.load(first, weights_only=True)["state_dict"]}, bare)
    assert training_stages(bare) == []


def test_train_command_records_its_flags(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--run-dir",
            str(run_dir),
            "--iterations",
            "1",
            "--batch-size",
            "2",
            "--min-side",
            "64",
            "--max-side",
            "64",
            "--seed",
            "7",
            "--click-gamma",
            "0.25",
            "--time-limit-min",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    (stage,) = training_stages(run_dir / FINAL_NAME)
    assert stage["iterations_done"] == 1
    assert {k: stage["settings"][k] for k in ("seed", "click_gamma", "max_side")} == {
        "seed": 7,
        "click_gamma": 0.25,
        "max_side": 64,
    }
    refused = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "bad"), "--click-gamma", "1.5"])
    assert refused.exit_code != 0 and not (tmp_path / "bad" / FINAL_NAME).exists()


def test_click_gamma_zero_trains_the_first_click_only() -> None:
    rng = np.random.default_rng(0)
    assert {sample_num_clicks(rng, 20, 0.0) for _ in range(200)} == {0}
