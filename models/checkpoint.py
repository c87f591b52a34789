"""Loading official (mmcv) InterFormer checkpoints, strictly and with one-line errors."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import PRESETS, InterFormerConfig, config_from_state_dict
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
    A file that is neither a ``torch.save`` zip archive nor a pickle is refused before any
    unpickling, so ``allow_pickle`` never runs the unpickler on arbitrary bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    is_archive = _check_container(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch raises this both for objects the safe loader refuses and for garbage bytes.
        # In a verified torch.save archive the safe loader only fails on what it refuses to build (objects,
        # newer pickle opcodes); in a bare pickle, anything but a refused global may just be garbage.
        refused = "Weights only load failed" in str(err) if is_archive else "Unsupported global" in str(err)
        if not refused:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_sentence(err)}") from None
        if not allow_pickle:
            raise CheckpointError(
                f"{path} holds Python objects that the safe loader refuses; "
                "if you trust the file, allow full unpickling (--unsafe-load)"
            ) from None
        warnings.warn(f"loading {path} with full unpickling: only do this for trusted files", stacklevel=2)
        raw = _load_or_fail(path, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_sentence(err)}") from None
    return clean_state_dict(raw, source=str(path))


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # pickle protocol 2+ opcode: legacy torch.save files and plain pickles start with it


def _check_container(path: Path) -> bool:
    """Refuse files that cannot be a ``torch.save`` output, naming what is wrong (one sentence).

    Returns True for a zip archive with a ``data.pkl`` (the current format), False for a pickle (legacy).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a PyTorch checkpoint")
    if head.startswith(_PICKLE_PROTO):
        return False
    if head != _ZIP_MAGIC:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: it is neither a torch.save zip archive nor a pickle"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(
            f"{path} is a truncated or damaged PyTorch checkpoint ({size} bytes, its zip archive is incomplete): "
            "copy or download it again"
        ) from None
    if not any(name.endswith("data.pkl") for name in names):
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (it has no data.pkl)")
    return True


def _load_or_fail(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_sentence(err)}") from None


def _first_sentence(err: BaseException, limit: int = 200) -> str:
    """The first whole sentence of an exception's message (torch's are paragraphs), ending with a full stop."""
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else type(err).__name__
    end = text.find(". ")
    if end > 0:
        text = text[: end + 1]
    if len(text) > limit:  # still too long for one line: cut at a word, and say so
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text if text.endswith((".", "…")) else text + "."


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


def load_into(model: InterFormer, state_dict: Mapping[str, Tensor], architecture: str | None = None) -> None:
    """Strictly load ``state_dict`` into ``model``: one error lists every mismatch.

    ``architecture`` names the architecture in that error (default: ``preset 'NAME'``).

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
        what = architecture or _architecture_label(model.cfg)
        raise CheckpointError(f"checkpoint does not fit the {what} architecture: " + "; ".join(problems))
    model.load_state_dict({k: merged[k] for k in expected}, strict=True)


def _architecture_label(cfg: InterFormerConfig) -> str:
    """``preset 'light'`` for an unchanged preset, else ``custom 'NAME'``."""
    kind = "preset" if PRESETS.get(cfg.name) == cfg else "custom"
    return f"{kind} {cfg.name!r}"


def load_interformer(path: str | Path, cfg: InterFormerConfig | None = None, allow_pickle: bool = False) -> InterFormer:
    """Build the architecture (given, or inferred from the checkpoint's shapes) and load it, in eval mode."""
    state_dict = read_checkpoint(path, allow_pickle=allow_pickle)
    architecture = None
    if cfg is None:
        try:
            cfg = config_from_state_dict(state_dict, name=Path(path).stem)
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
        architecture = "inferred (from the checkpoint's tensor shapes)"
    model = InterFormer(cfg)
    load_into(model, state_dict, architecture)
    return model.eval()
