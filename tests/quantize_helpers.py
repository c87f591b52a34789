"""Helpers of the quantizer tests (test_quantize.py, test_quantize_fallback.py): small GrabCut-layout folders
and export copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (64, 96)


def write_grabcut_folder(root: Path, count: int, seed: int) -> Path:
    """``count`` images with one smooth-edged object each, in the GrabCut layout (img/, gt/, list/val.txt)."""
    rng = np.random.default_rng(seed)
    for sub in ("img", "gt", "list"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    for i in range(count):
        cy, cx = rng.uniform(20, 44), rng.uniform(25, 70)
        mask = ((yy - cy) / rng.uniform(10, 18)) ** 2 + ((xx - cx) / rng.uniform(12, 24)) ** 2 < 1
        image = rng.integers(0, 60, (*SIZE, 3)).astype(np.uint8)
        image[mask] = rng.integers(150, 255, 3).astype(np.uint8)
        name = f"obj{i}"
        Image.fromarray(image).save(root / "img" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "gt" / f"{name}.png")
        names.append(name)
    (root / "list" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def calibration_and_heldout(root: Path) -> tuple[Path, Path]:
    """Three calibration and three held-out objects (different seeds) below ``root``."""
    return write_grabcut_folder(root / "calib", 3, seed=1), write_grabcut_folder(root / "heldout", 3, seed=2)


def copy_export(export: Path, tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(export, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
