"""Procedural interactive-segmentation data: textured objects on textured backgrounds.

Each sample is one RGB image with several occluding objects and the exact visible mask of one of
them (the *target*). Object and background textures are random crops of permissively licensed
photographs bundled with scikit-image, randomly scaled, rotated, flipped and colour-jittered, so
that a model trained on it learns "segment the coherent textured region under the click" instead
of "segment the flat-coloured blob".

Determinism: ``make_sample(split, seed, index, size)`` is a pure function of its arguments. The
random stream is ``np.random.SeedSequence([split tag, seed, index, H, W])`` with one distinct tag
per split, so train and held-out streams never coincide whatever the seeds. The texture photos are
split into two disjoint groups (``texture_sources.TEXTURE_SPLITS``), so held-out images contain no
pixel source seen in training.

Speed: about 15–16 ms per 256x256 sample on one core of the development machine (see the report
in ``__main__``: ``python -m interformer_edge.training.synth``).

Only numpy, scipy and scikit-image are used (workstation/training dependencies).

This module draws the random stream and assembles the sample; the parts live in sibling modules:
:mod:`.texture_sources` (photos, licences, split groups), :mod:`.textures` and :mod:`.value_noise`
(texture patches), :mod:`.shapes` and :mod:`.polygon_fill` (object outlines and their
rasterisation), :mod:`.scene_layout` (placement and occlusion) and :mod:`.compositing` (rendering).
"""

from __future__ import annotations

import time
from typing import Final

import numpy as np

from .compositing import background, finish, paint
from .scene_layout import sample_layout
from .texture_sources import TEXTURE_SOURCES, check_split, load_texture
from .textures import pick_source

# Distinct SeedSequence namespaces: the same (seed, index) gives unrelated samples per split.
_SPLIT_TAG: Final[dict[str, int]] = {"train": 0x5EED_7A1, "heldout": 0x5EED_4E1D}


def make_sample(split: str, seed: int, index: int, size: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic sample, a pure function of (split, seed, index, size).

    Returns ``(image, mask)``: image uint8 (H, W, 3) RGB, mask bool (H, W) = the visible part of
    the target object, with area fraction in [MIN_AREA_FRACTION, MAX_AREA_FRACTION] of :mod:`.scene_layout`.
    """
    check_split(split)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng(np.random.SeedSequence([_SPLIT_TAG[split], int(seed), int(index), h, w]))
    layout = sample_layout(rng, (h, w))
    target_src = pick_source(rng, split, p_synthetic=0.15)
    canvas = background(rng, split, (h, w), avoid=target_src if rng.random() < 0.85 else None)
    for i, m in enumerate(layout.masks):
        if i == layout.target:
            src = target_src
        elif target_src is not None and rng.random() < 0.3:
            src = target_src  # distractor of similar texture: colour/shape must disambiguate
        else:
            src = pick_source(rng, split, p_synthetic=0.2)
        paint(rng, canvas, m, src, split, is_target=i == layout.target)
    return finish(rng, canvas), layout.visible


class SyntheticSegmentation:
    """Indexable synthetic dataset: ``sample(index) -> (image uint8 (H, W, 3), mask bool (H, W))``.

    ``split`` is "train" or "heldout" (disjoint seed namespaces and disjoint texture photos);
    ``size`` is (H, W); ``length`` only serves ``len()`` for DataLoaders, any index >= 0 works.
    """

    def __init__(
        self, split: str = "train", size: tuple[int, int] = (256, 256), seed: int = 0, length: int = 100_000
    ) -> None:
        check_split(split)
        self.split = split
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: image uint8 (H, W, 3) RGB and target mask bool (H, W)."""
        if index < 0:
            raise IndexError(index)
        return make_sample(self.split, self.seed, index, self.size)

    __getitem__ = sample


def _benchmark(n: int = 200, size: tuple[int, int] = (256, 256)) -> float:
    """Mean milliseconds per sample (single thread; textures pre-loaded)."""
    ds = SyntheticSegmentation("train", size, seed=123)
    for name in TEXTURE_SOURCES:
        load_texture(name)
    ds.sample(0)
    t0 = time.perf_counter()
    for i in range(n):
        ds.sample(i)
    return (time.perf_counter() - t0) / n * 1000.0


if __name__ == "__main__":
    print(f"{_benchmark():.1f} ms per 256x256 sample")
