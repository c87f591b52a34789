"""Tests of the procedural training data and the held-out evaluation set writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interformer_edge.training.eval_set import EVAL_MAX_SIDE, EVAL_MIN_SIDE, write_eval_set
from interformer_edge.training.polygon_fill import fill_polygons
from interformer_edge.training.scene_layout import MAX_AREA_FRACTION, MIN_AREA_FRACTION
from interformer_edge.training.synth import SyntheticSegmentation, make_sample
from interformer_edge.training.texture_sources import TEXTURE_SOURCES, texture_names
from interformer_edge.training.textures import texture


def test_sample_types_and_shapes() -> None:
    image, mask = SyntheticSegmentation("train", size=(200, 264), seed=0).sample(0)
    assert image.shape == (200, 264, 3) and image.dtype == np.uint8
    assert mask.shape == (200, 264) and mask.dtype == bool


def test_deterministic_per_index() -> None:
    a = SyntheticSegmentation("train", seed=7).sample(5)
    b = SyntheticSegmentation("train", seed=7).sample(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # Order of access must not matter (no hidden generator state).
    ds = SyntheticSegmentation("train", seed=7)
    ds.sample(6)
    np.testing.assert_array_equal(ds.sample(5)[0], a[0])


def test_seeds_indices_and_splits_differ() -> None:
    base = make_sample("train", 0, 3)[0]
    assert not np.array_equal(base, make_sample("train", 1, 3)[0])
    assert not np.array_equal(base, make_sample("train", 0, 4)[0])
    assert not np.array_equal(base, make_sample("heldout", 0, 3)[0])


def test_texture_groups_are_disjoint_and_complete() -> None:
    train, heldout = set(texture_names("train")), set(texture_names("heldout"))
    assert train and heldout
    assert not train & heldout
    assert train | heldout == set(TEXTURE_SOURCES)
    for src in TEXTURE_SOURCES.values():
        assert src.licence


def test_texture_guard_rejects_other_split() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        texture(rng, "train", 8, 8, texture_names("heldout")[0])


def test_unknown_split() -> None:
    with pytest.raises(ValueError):
        SyntheticSegmentation("val")


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_mask_area_in_promised_range(split: str) -> None:
    fractions = []
    for i in range(15):
        _, mask = make_sample(split, 11, i, (256, 320))
        frac = mask.mean()
        assert 0.0 < frac < 1.0
        assert MIN_AREA_FRACTION <= frac <= MAX_AREA_FRACTION, (i, frac)
        fractions.append(frac)
    # Not degenerate: sizes vary over the samples.
    assert max(fractions) > 2 * min(fractions)


def test_fill_polygons_square_and_hole() -> None:
    square = np.array([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [30.0, 10.0]])
    full = fill_polygons([square], (40, 40))
    assert full.sum() == 20 * 20  # rows/cols 10..29 (half-open edges)
    hole = np.array([[15.0, 15.0], [25.0, 15.0], [25.0, 25.0], [15.0, 25.0]])  # opposite orientation
    ring = fill_polygons([square, hole], (40, 40))
    assert ring.sum() == 400 - 100 and not ring[20, 20] and ring[12, 12]


def test_eval_set_layout(tmp_path: Path) -> None:
    names = write_eval_set(tmp_path, count=3, seed=5)
    listed = (tmp_path / "list" / "val.txt").read_text().split()
    assert listed == names
    imgs = sorted(p.stem for p in (tmp_path / "img").iterdir())
    gts = sorted(p.stem for p in (tmp_path / "gt").iterdir())
    assert imgs == gts == sorted(names)
    for name in names:
        img = np.asarray(Image.open(tmp_path / "img" / f"{name}.jpg"))
        gt = np.asarray(Image.open(tmp_path / "gt" / f"{name}.png"))
        assert img.ndim == 3 and img.shape[2] == 3
        assert gt.shape == img.shape[:2]
        assert set(np.unique(gt)) == {0, 255}
        assert all(EVAL_MIN_SIDE <= s <= EVAL_MAX_SIDE for s in gt.shape)
    # Deterministic: rewriting gives identical masks.
    again = tmp_path / "again"
    write_eval_set(again, count=1, seed=5)
    np.testing.assert_array_equal(
        np.asarray(Image.open(again / "gt" / f"{names[0]}.png")),
        np.asarray(Image.open(tmp_path / "gt" / f"{names[0]}.png")),
    )
