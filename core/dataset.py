"""Interactive-segmentation evaluation sets in the GrabCut / Berkeley / DAVIS layout.

``<root>/img/<name>.<ext>``, ``<root>/gt/<name>.<ext>`` and ``<root>/list/val.txt`` (one name per
line; if the list is absent, every image in ``img/`` is used).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .image_io import ImageReadError, read_mask, read_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) bool


@dataclass
class EvalDataset:
    """Lazily read samples; files that cannot be used are listed in ``problems``, never counted."""

    root: Path
    names: list[str]
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Sample]:
        for name in self.names:
            sample = self._load(name)
            if sample is not None:
                yield sample

    def _find(self, folder: str, name: str) -> Path | None:
        for suffix in IMAGE_SUFFIXES:
            candidate = self.root / folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def _load(self, name: str) -> Sample | None:
        image_path, mask_path = self._find("img", name), self._find("gt", name)
        if image_path is None or mask_path is None:
            self.problems.append(f"{name}: missing {'image' if image_path is None else 'mask'}")
            return None
        try:
            image, mask = read_rgb(image_path), read_mask(mask_path)
        except ImageReadError as err:
            self.problems.append(f"{name}: {err}")
            return None
        if image.shape[:2] != mask.shape:
            self.problems.append(f"{name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
            return None
        if not mask.any():
            self.problems.append(f"{name}: empty mask")
            return None
        return Sample(name, image, mask)


def open_dataset(root: str | Path, limit: int | None = None) -> EvalDataset:
    """Index a dataset folder; raises ``FileNotFoundError`` when it has no ``img/`` folder."""
    root = Path(root)
    if not (root / "img").is_dir():
        raise FileNotFoundError(f"{root} is not a dataset folder (expected {root / 'img'})")
    listing = root / "list" / "val.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    else:
        names = sorted(p.stem for p in (root / "img").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return EvalDataset(root, names[:limit] if limit else names)
