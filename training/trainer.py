"""CPU training of a small InterFormer on synthetic data, following the official recipe.

Per iteration: a batch of synthetic (image, mask) pairs; a first click at the object centre; k ~
P(k) ∝ gamma^k further simulated clicks (``click_gamma``, 0.6 by default), each from the model's
own prediction (no gradient) with the previous prediction folded into the reference labels; then
one differentiable pass on the final reference labels with the normalized focal loss. The ViT runs
once per batch with gradients and its features are reused (detached) by the simulated clicks.

Two options, off in the defaults (the bundled model's runs): batches of their own (non-square) size
between ``min_side`` and ``max_side`` (same pixels per step, fewer images for larger sides), to
cover the sizes the model is evaluated at (held-out images are 256–480 px and the official
evaluation never resizes); and bfloat16 autocast of the forward passes (weights, optimizer and
loss stay float32), about 1.4x faster per step here (AVX512-BF16). A run with both (256–480 px, bf16,
5200 steps) gave a worse model than the defaults (see the README's model card).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from interformer_edge import __version__
from interformer_edge.core.atomic import atomic_target
from interformer_edge.core.preprocess import normalize_image
from interformer_edge.core.spec import SIZE_DIVISOR
from interformer_edge.models import InterFormer, InterFormerConfig, load_into, read_checkpoint, upsample_logits

from .losses import normalized_focal_loss
from .sessions import BatchSession, sample_num_clicks
from .synth import make_sample

RESUME_NAME = "last.pth"
FINAL_NAME = "model.pth"
LOG_NAME = "train.log"


@dataclass
class TrainSettings:
    """Everything that determines a training run (with the seed, the run is reproducible)."""

    iterations: int = 3200
    batch_size: int = 8  # samples per step at min_side x min_side (fewer for larger batches)
    # Batch sides are drawn from the multiples of 32 in [min_side, max_side]; the bundled model was
    # trained at a fixed 256 (a 256-480 px, bf16, 5200-step run did worse, see the README's model card).
    min_side: int = 256
    max_side: int = 256
    table_size: int = 256  # img_size of the model: position tables and pooling targets of a 16x16 grid
    bf16: bool = False  # bfloat16 autocast of the forward passes (about 1.4x faster per step on AVX512-BF16)
    lr: float = 4e-4
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    embed_dims: int = 192
    depth: int = 6
    max_sim_clicks: int = 20
    click_gamma: float = 0.6
    drop_path: float = 0.05
    threads: int = 2
    save_every_s: float = 300.0
    time_limit_min: float = 88.0  # stop (and save) early past this many minutes; 0 disables
    init_from: str = ""  # start from these weights (a finished run's model.pth) instead of random ones

    def model_config(self) -> InterFormerConfig:
        # The position tables (and the pooling targets that scale with them) are sized for a middle
        # training size; other sizes resize them, exactly as the official models do off 512 px.
        return InterFormerConfig(
            name="small-synthetic",
            img_size=self.table_size,
            embed_dims=self.embed_dims,
            depth=self.depth,
            num_heads=max(1, self.embed_dims // 64),
        )

    def batch_plan(self, batch: int) -> tuple[int, int, int]:
        """``(H, W, n)`` of batch number ``batch``: its sides, drawn from the multiples of 32 in
        ``[min_side, max_side]``, and its sample count, ``batch_size`` at ``min_side``² and fewer for
        larger sides (same pixels per step, never below 2 for the head's BatchNorm). A pure function
        of the seed and the batch number."""
        sides = np.arange(self.min_side, self.max_side + 1, SIZE_DIVISOR)
        if len(sides) == 0 or self.min_side % SIZE_DIVISOR:
            raise ValueError(f"min_side/max_side must span a multiple of {SIZE_DIVISOR}")
        height, width = (int(v) for v in np.random.default_rng([_SHAPE_STREAM, self.seed, batch]).choice(sides, 2))
        count = max(2, min(self.batch_size, round(self.batch_size * self.min_side**2 / (height * width))))
        return height, width, count


# Namespace of the batch-shape random stream (distinct from the data and click streams).
_SHAPE_STREAM = 0x51DE5

SampleKey = tuple[int, int, int]  # (sample index, H, W)


class SyntheticBatches(Dataset):
    """Sample ``(index, H, W)`` of the training split, normalized, with a deterministic horizontal flip."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        index, height, width = key
        image, mask = make_sample("train", self.seed, index, (height, width))
        if index % 2:
            image, mask = image[:, ::-1], mask[:, ::-1]
        # Sides are multiples of 32, so the shared preprocessing adds no padding here.
        normalized = normalize_image(np.ascontiguousarray(image))[0]
        return torch.from_numpy(normalized), torch.from_numpy(np.ascontiguousarray(mask))


class _BatchPlans(torch.utils.data.Sampler[list[SampleKey]]):
    """The keys of batches ``start``, ``start + 1``, … (see :meth:`TrainSettings.batch_plan`)."""

    def __init__(self, settings: TrainSettings, start: int) -> None:
        self.settings = settings
        self.start = start

    def __iter__(self):
        batch = self.start
        while True:
            height, width, count = self.settings.batch_plan(batch)
            # Sample indices b * batch_size + 0..n-1 (n <= batch_size): unique, independent of earlier
            # batches, and at a fixed size the same stream as plain consecutive batches.
            yield [(batch * self.settings.batch_size + i, height, width) for i in range(count)]
            batch += 1


def learning_rate(settings: TrainSettings, iteration: int) -> float:
    """Linear warm-up, then polynomial (power 1) decay to zero, as the official schedule."""
    if iteration < settings.warmup:
        return settings.lr * (iteration + 1) / settings.warmup
    progress = (iteration - settings.warmup) / max(1, settings.iterations - settings.warmup)
    return settings.lr * max(0.0, 1.0 - progress)


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def official_layout(model: InterFormer, meta: dict[str, Any], half: bool = True) -> dict[str, Any]:
    """An mmcv-style checkpoint ``{'meta', 'state_dict'}`` with the official key set, kept small: floats
    stored as float16 and the (deterministic) relative-position index buffers as int16, which the
    loader widens back (they are 6 x 2.7 MB in int64 for a 24x24 grid)."""
    state = {}
    for key, value in model.state_dict().items():
        if half and value.is_floating_point():
            value = value.half()
        elif key.endswith("relative_position_index") and int(value.max()) <= torch.iinfo(torch.int16).max:
            value = value.to(torch.int16)
        state[key] = value.clone()
    return {"meta": meta, "state_dict": state}


class Trainer:
    """Owns the model, optimizer and data stream of one run folder (resumable)."""

    def __init__(self, settings: TrainSettings, run_dir: Path, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.log = log
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        self.model = InterFormer(
            settings.model_config(), backbone_drop_path=settings.drop_path, neck_drop_path=settings.drop_path
        )
        _init_weights(self.model)
        # Settings of the runs this one continues (oldest first), recorded in the final checkpoint.
        self.earlier_stages: list[dict[str, Any]] = []
        if settings.init_from:
            load_into(self.model, read_checkpoint(settings.init_from))
            self.earlier_stages = training_stages(settings.init_from)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.iteration = 0
        self.click_rng = np.random.default_rng(settings.seed)
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        path = self.run_dir / RESUME_NAME
        if not path.is_file():
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        if _trajectory(state["settings"]) != _trajectory(asdict(self.settings)):
            raise ValueError(f"{path} was written with other settings; use a new run folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
        self.click_rng.bit_generator.state = state["click_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.log(f"resumed from {path} at iteration {self.iteration}")

    def save_resumable(self) -> None:
        _atomic_save(
            {
                "settings": asdict(self.settings),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "iteration": self.iteration,
                "click_rng": self.click_rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            },
            self.run_dir / RESUME_NAME,
        )

    def step(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[float, int]:
        """One optimisation step; returns (loss, number of simulated clicks)."""
        s = self.settings
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(s, self.iteration)
        gts = masks.numpy()
        height, width = gts.shape[1:]
        session = BatchSession(gts, self.click_rng)
        num_sim = sample_num_clicks(self.click_rng, s.max_sim_clicks, s.click_gamma)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
            features = self.model.encode(images)
            if num_sim:
                detached = [f.detach() for f in features]
                with torch.no_grad():
                    for _ in range(num_sim):
                        logits = self.model.decode(detached, _ref_tensor(session.ref_labels))
                        preds = _predict(logits.float(), height, width)
                        session.update_with_prediction(preds)
                        session.click(preds)
            logits = self.model.decode(features, _ref_tensor(session.ref_labels))
        loss = normalized_focal_loss(upsample_logits(logits.float(), height, width), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.item(), num_sim

    def run(self, stop_at: int | None = None) -> Path:
        """Train until ``iterations``, the time limit or ``stop_at`` (an interruption that keeps the
        schedule); write the resumable state and the final checkpoint; return the latter's path."""
        s = self.settings
        last = s.iterations if stop_at is None else min(stop_at, s.iterations)
        loader = DataLoader(
            SyntheticBatches(s.seed),
            batch_sampler=_BatchPlans(s, self.iteration),
            num_workers=1,
            # Not fork: forking a process that runs other threads (ONNX Runtime's and OpenVINO's pools, a
            # server) can copy a lock some thread held, and the worker then hangs at its first allocation.
            multiprocessing_context="forkserver",
            persistent_workers=False,
            prefetch_factor=4,
            # Its own generator: creating the iterator must not advance the global RNG
            # (drop path draws from it), or a resumed run would diverge.
            generator=torch.Generator().manual_seed(s.seed),
        )
        started = last_save = time.monotonic()
        start_iter = self.iteration
        running = None
        for images, masks in loader:
            if self.iteration >= last:
                break
            loss, num_sim = self.step(images, masks)
            running = loss if running is None else 0.98 * running + 0.02 * loss
            now = time.monotonic()
            if self.iteration % 20 == 0 or self.iteration == s.iterations:
                rate = (self.iteration - start_iter) / max(1e-6, now - started)
                eta = (s.iterations - self.iteration) / max(rate, 1e-6)
                self.log(
                    f"iter {self.iteration}/{s.iterations} loss {running:.4f} sim_clicks {num_sim} "
                    f"lr {learning_rate(s, self.iteration):.2e} {rate:.2f} it/s eta {eta / 60:.1f} min"
                )
            if now - last_save > s.save_every_s:
                self.save_resumable()
                last_save = now
            if s.time_limit_min and now - started > 60 * s.time_limit_min:
                self.log(f"time limit reached at iteration {self.iteration}")
                break
        self.save_resumable()
        return self.write_final(elapsed_s=time.monotonic() - started)

    def write_final(self, elapsed_s: float, metrics: dict[str, Any] | None = None) -> Path:
        this_stage = {
            "settings": asdict(self.settings),
            "iterations_done": self.iteration,
            "train_seconds_this_session": round(elapsed_s, 1),
        }
        # This run's own entries stay at the top level too, the form older checkpoints have.
        meta = {
            "interformer_edge": __version__,
            "arch": json.dumps(self.settings.model_config().to_dict()),
            "train_settings": json.dumps(this_stage["settings"]),
            "iterations_done": this_stage["iterations_done"],
            "train_seconds_this_session": this_stage["train_seconds_this_session"],
            "stages": json.dumps([*self.earlier_stages, this_stage]),
        }
        if metrics:
            meta["metrics"] = json.dumps(metrics)
        path = self.run_dir / FINAL_NAME
        _atomic_save(official_layout(self.model, meta), path)
        return path


def training_stages(checkpoint: str | Path) -> list[dict[str, Any]]:
    """The training stages that produced a checkpoint written by :class:`Trainer`, oldest first, each
    ``{'settings': {...}, 'iterations_done': int | None, ...}``; empty for checkpoints without that
    record (e.g. official ones). Reads the ``stages`` entry of its ``meta``, or the two-entry form of
    older bundled models (``init_train_settings`` then ``train_settings``)."""
    blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta = blob.get("meta") if isinstance(blob, dict) else None
    if not isinstance(meta, dict):
        return []
    if "stages" in meta:
        return list(json.loads(meta["stages"]))
    stages = []
    if "init_train_settings" in meta:
        stages.append({"settings": json.loads(meta["init_train_settings"]), "iterations_done": None})
    if "train_settings" in meta:
        stages.append(
            {
                "settings": json.loads(meta["train_settings"]),
                "iterations_done": meta.get("iterations_done"),
                "train_seconds_this_session": meta.get("train_seconds_this_session"),
            }
        )
    return stages


# Settings that do not change what the run computes may differ when resuming.
_RUN_ONLY_SETTINGS = ("threads", "save_every_s", "time_limit_min")


def _trajectory(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _RUN_ONLY_SETTINGS}


def _ref_tensor(ref_labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(ref_labels[:, None].astype(np.float32))


def _predict(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    full = upsample_logits(logits, height, width)
    return (full[:, 1] > full[:, 0]).numpy()


def _init_weights(model: InterFormer) -> None:
    """Truncated-normal linear layers and small position tables, as MAE/BEiT initialise from scratch."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    backbone = model.backbone
    torch.nn.init.trunc_normal_(backbone.pos_embed, std=0.02)
    torch.nn.init.trunc_normal_(backbone.cls_token, std=0.02)
    torch.nn.init.normal_(model.neck.patch_embed, std=math.sqrt(2.0 / (5 + model.cfg.fpn_dims[0])))
    for layer in backbone.layers:
        # Layer scale starts small so the randomly initialised trunk trains stably.
        torch.nn.init.constant_(layer.gamma_1, 0.1)
        torch.nn.init.constant_(layer.gamma_2, 0.1)
