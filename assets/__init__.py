"""Files shipped with the package: the default checkpoint, the held-out evaluation set, the INT8
calibration set (training-split scenes, disjoint from the held-out ones) and demo photos."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = ASSETS_DIR / "interformer_small_synthetic.pth"
HELDOUT_DIR = ASSETS_DIR / "heldout"
CALIB_DIR = ASSETS_DIR / "calib"
PHOTOS_DIR = ASSETS_DIR / "photos"


def default_checkpoint() -> Path:
    """Path of the bundled default model; a clear error if this install lacks it."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the bundled default checkpoint is missing: {DEFAULT_CHECKPOINT}")
    return DEFAULT_CHECKPOINT
