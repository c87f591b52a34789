"""Image folders and ``interformer-encode encode`` runs for the tests of the encode command (interrupts,
shared stores, progress in logs)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def image_folder(root: Path, count: int, side: int) -> Path:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)).save(folder / f"im{index:02d}.png")
    return folder


def summary_rows(output: str) -> dict[str, str]:
    return {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in output.splitlines() if line.count("│") == 3
    }


def encode_command(folder: Path, export: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "interformer_edge.runtime.cli",
        "encode",
        str(folder),
        "--model",
        str(export),
        "--out",
        str(store),
        "--threads",
        "1",
        *extra,
    ]
