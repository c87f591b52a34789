"""Loading official (mmcv) InterFormer checkpoints, strictly and with one-line errors."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import InterFormerConfig, config_from_state_dict
from .interformer import InterFormer
from .vit import canonical_relative_position_index

IGNORED_PREFIXES = ("auxiliary_head.",)  # training-only head of the official checkpoints
_REL_INDEX_SUFFIX = ".attn.relative_position_index"


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the architecture; the message says why."""


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """Read a checkpoint file and return its clean state dict.

    Accepts ``{'meta', 'state_dict', ...}`` mmcv files and bare state dicts; strips ``module.``
    prefixes and drops the auxiliary head. Uses ``torch.load(weights_only=True)``; with
    ``allow_pickle`` it falls back to full unpickling (only for files you trust) with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch raises this both for objects the safe loader refuses and for garbage bytes.
        if "Weights only load failed" not in str(err):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(err)})") from None
        if not allow_pickle:
            raise CheckpointError(
                f"{path} holds Python objects that the safe loader refuses; "
                "if you trust the file, allow full unpickling (--unsafe-load)"
            ) from None
        warnings.warn(f"loading {path} with full unpickling: only do this for trusted files", stacklevel=2)
        raw = _load_or_fail(path, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(err)})") from None
    return clean_state_dict(raw, source=str(path))


def _load_or_fail(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:160]


def clean_state_dict(raw: Any, source: str = "checkpoint") -> dict[str, Tensor]:
    """Unwrap ``state_dict``, strip ``module.``, drop ignored heads; float tensors become float32."""
    if isinstance(raw, Mapping) and "state_dict" in raw:
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{source} does not contain a state dict of tensors")
    cleaned: dict[str, Tensor] = {}
    for key, value in raw.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith(IGNORED_PREFIXES):
            continue
        cleaned[name] = value.float() if value.is_floating_point() else value
    return cleaned


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, … (+{len(keys) - limit} more)" if len(keys) > limit else shown


def load_into(model: InterFormer, state_dict: Mapping[str, Tensor]) -> None:
    """Strictly load ``state_dict`` into ``model``: one error lists every mismatch.

    ``relative_position_index`` buffers are deterministic: they may be absent, and when present
    they must equal BEiT's index for the model's grid.
    """
    expected = model.state_dict()
    canonical = canonical_relative_position_index(model.cfg.grid_size)
    merged = dict(state_dict)
    for key in expected:
        if key.endswith(_REL_INDEX_SUFFIX):
            given = merged.setdefault(key, canonical)
            if given.shape == canonical.shape and not torch.equal(given.to(torch.int64), canonical):
                raise CheckpointError(f"{key} differs from the BEiT relative position index for this grid")
    missing = sorted(set(expected) - set(merged))
    unexpected = sorted(set(merged) - set(expected))
    mismatched = [
        f"{k} {tuple(merged[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in merged and merged[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_describe(mismatched)}")
    if problems:
        raise CheckpointError(f"checkpoint does not fit architecture {model.cfg.name!r}: " + "; ".join(problems))
    model.load_state_dict({k: merged[k] for k in expected}, strict=True)


def load_interformer(
    path: str | Path, cfg: InterFormerConfig | None = None, allow_pickle: bool = False
) -> InterFormer:
    """Build the architecture (given, or inferred from the checkpoint's shapes) and load it, in eval mode."""
    state_dict = read_checkpoint(path, allow_pickle=allow_pickle)
    if cfg is None:
        try:
            cfg = config_from_state_dict(state_dict, name=Path(path).stem)
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
    model = InterFormer(cfg)
    load_into(model, state_dict)
    return model.eval()
