"""Pure-PyTorch InterFormer that loads the official checkpoints unchanged (workstation side)."""

from .checkpoint import CheckpointError, clean_state_dict, load_interformer, load_into, read_checkpoint
from .config import PRESETS, InterFormerConfig, config_from_state_dict, preset
from .interformer import ClickDecoder, ImageContext, ImageEncoder, InterFormer, build_interformer, upsample_logits

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ClickDecoder",
    "ImageContext",
    "ImageEncoder",
    "InterFormer",
    "InterFormerConfig",
    "build_interformer",
    "clean_state_dict",
    "config_from_state_dict",
    "load_interformer",
    "load_into",
    "preset",
    "read_checkpoint",
    "upsample_logits",
]
