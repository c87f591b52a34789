"""Masks as polygons and boxes (annotate/shapes.py), and the CVAT interactor's polygon / box answers.

Polygons are checked by filling them with a rasteriser written here (even-odd crossings at pixel
centres, one pixel at a time), independent of the module's own :func:`rasterize`.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

from interformer_edge.annotate.shapes import (
    Polygon,
    coco_polygons,
    coco_polygons_mask,
    mask_box,
    mask_polygons,
    polygon_points,
    rasterize,
    ring_area,
    ring_perimeter,
    simplify_ring,
)


def fill(rings: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Pixels whose centre is inside ``rings`` (even-odd): the crossings of a ray to the right, counted."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = np.zeros((height, width), dtype=bool)
    for ring in rings:
        ring = np.asarray(ring, dtype=float)
        for (x0, y0), (x1, y1) in zip(ring, np.roll(ring, -1, axis=0), strict=True):
            if y0 == y1:
                continue
            spans = (np.minimum(y0, y1) <= ys) & (ys < np.maximum(y0, y1))
            at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            inside ^= spans & (at > xs)
    return inside


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def all_rings(parts: list[Polygon]) -> list[np.ndarray]:
    return [ring for part in parts for ring in (part.outer, *part.holes)]


def test_random_masks_come_back_exactly_from_their_polygons() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        height, width = rng.integers(1, 24, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.1, 0.9)
        parts = mask_polygons(mask)
        assert np.array_equal(fill(all_rings(parts), height, width), mask), trial
        assert np.array_equal(fill([p.bridged() for p in parts], height, width), mask), trial
        assert np.array_equal(rasterize(all_rings(parts), height, width), mask), trial
        assert sum(p.area for p in parts) == mask.sum()
        coco = coco_polygons(mask)  # flat [x1, y1, x2, y2, ...] per part, holes joined in
        assert all(len(p) >= 8 and len(p) % 2 == 0 for p in coco)
        assert np.array_equal(coco_polygons_mask(coco, height, width), mask), trial
        assert np.array_equal(fill([np.reshape(p, (-1, 2)) for p in coco], height, width), mask), trial


def test_holes_belong_to_the_part_around_them_and_parts_nest() -> None:
    mask = np.zeros((24, 24), dtype=bool)
    mask[2:22, 2:22] = True
    mask[5:19, 5:19] = False  # a hole...
    mask[8:16, 8:16] = True  # ...with an island in it...
    mask[10:14, 10:14] = False  # ...that has its own hole
    mask[0, 23] = True  # and a speck in the corner
    parts = mask_polygons(mask)
    assert [(len(p.holes), p.area) for p in parts] == [(1, 20 * 20 - 14 * 14), (1, 8 * 8 - 4 * 4), (0, 1)]
    assert ring_area(parts[0].outer) > 0 and all(ring_area(h) < 0 for p in parts for h in p.holes)
    for part in parts:  # each part alone, with its hole, is exactly its pixels
        ring = part.bridged()
        assert (ring == ring[0]).all(axis=1).sum() == 1  # a tool would close the polygon at a repeated first vertex
        alone = fill([ring], 24, 24)
        assert alone.sum() == part.area and not (alone & ~mask).any()
    assert iou(fill([p.bridged() for p in parts], 24, 24), mask) == 1.0


def test_parts_are_8_connected_and_largest_first() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal line: one part (as OpenCV counts)
    mask[5:9, 6:11] = True  # a block
    mask[1, 9] = True  # a lone pixel
    parts = mask_polygons(mask)
    assert [p.area for p in parts] == [20, 3, 1]
    assert parts[0].outer.tolist() == [[6, 5], [11, 5], [11, 9], [6, 9]]  # pixel corners, clockwise on screen
    assert polygon_points(parts[0].outer) == [[6, 5], [11, 5], [11, 9], [6, 9]]
    assert mask_polygons(mask, max_parts=2)[-1].area == 3
    assert mask_polygons(mask, min_area=2)[-1].area == 3
    assert mask_polygons(np.zeros((4, 4))) == []


def test_boxes_are_tight() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = np.zeros((30, 40), dtype=bool)
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        mask[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = rng.random() < 2  # a filled block
        mask[rng.integers(0, 30), rng.integers(0, 40)] = True
        rows, cols = np.nonzero(mask)
        box = mask_box(mask)
        assert box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        x1, y1, x2, y2 = box
        assert mask[y1:y2, x1:x2].sum() == mask.sum()  # holds every pixel...
        assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()  # ...and touches all four sides
        assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
        corners = np.concatenate([p.outer for p in mask_polygons(mask)])
        assert (*corners.min(axis=0), *corners.max(axis=0)) == box
    assert mask_box(np.zeros((3, 3))) is None


def test_epsilon_simplifies_within_epsilon_of_the_outline() -> None:
    ys, xs = np.mgrid[0:200, 0:300]
    disc = (ys - 100) ** 2 + (xs - 140) ** 2 < 80**2
    disc[90:110, 130:150] = False  # a square hole
    exact = mask_polygons(disc)[0]
    previous = len(exact.outer)
    for factor in (0.0005, 0.001, 0.005, 0.02):
        part = mask_polygons(disc, factor)[0]
        assert len(part.outer) < previous or (factor < 0.001 and len(part.outer) == previous), factor
        assert len(part.holes) == 1
        previous = len(part.outer)
        epsilon = factor * ring_perimeter(exact.outer)
        # every vertex of the exact outline lies within epsilon of the simplified one (Douglas-Peucker)
        a, b = part.outer, np.roll(part.outer, -1, axis=0)
        p = exact.outer[:, None, :]
        t = np.clip(((p - a) * (b - a)).sum(axis=2) / ((b - a) ** 2).sum(axis=1), 0.0, 1.0)
        distance = np.hypot(*(p - (a + t[..., None] * (b - a))).transpose(2, 0, 1)).min(axis=1)
        assert distance.max() <= epsilon + 1e-9, factor
        # an octagon at 0.02 (epsilon 13 px), the outline within a pixel at X-AnyLabeling's default 0.001
        assert iou(fill([part.bridged()], 200, 300), disc) >= {0.0005: 0.999, 0.001: 0.999, 0.005: 0.98}.get(
            factor, 0.9
        )
    assert simplify_ring(exact.outer, 0.0) is exact.outer


def test_noisy_masks_stay_bounded() -> None:
    noise = np.random.default_rng(2).random((600, 600)) < 0.5  # thousands of parts and holes
    started = time.perf_counter()
    parts = mask_polygons(noise, 0.001, max_parts=64, max_holes=256)
    rings = [p.bridged() for p in parts]
    assert len(parts) == 64 and sum(len(p.holes) for p in parts) <= 256 and len(rings) == 64
    assert time.perf_counter() - started < 20.0
    assert np.array_equal(rasterize(all_rings(mask_polygons(noise)), 600, 600), noise)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2-d"):
        mask_polygons(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="epsilon_factor"):
        mask_polygons(np.ones((2, 2)), -0.1)


# --------------------------------------------------------------------------------- the CVAT interactor


@pytest.fixture(scope="module")
def interactor(light_export: Path):
    from interformer_edge.annotate.interactor import CvatInteractor

    model = CvatInteractor.from_export(light_export, threads=2)
    yield model
    model.close()


def test_cvat_polygon_and_box_answers_match_its_mask(interactor) -> None:
    from interformer_edge.annotate.errors import RequestError
    from interformer_edge.assets import PHOTOS_DIR

    image = base64.b64encode((PHOTOS_DIR / "coffee.jpg").read_bytes()).decode("ascii")
    body = {"image": image, "pos_points": [[250, 170], [300, 120]], "neg_points": [[40, 30]], "threshold": 0.5}
    mask = np.array(interactor.handle(body)["mask"], dtype=bool)
    assert mask.any()
    polygons = interactor.handle({**body, "output": "polygon", "epsilon_factor": 0})
    height, width = mask.shape
    assert iou(fill(polygons["polygons"], height, width), mask) == 1.0
    assert polygons["points"] == polygons["polygons"][0]
    simplified = interactor.handle({**body, "output": "polygon"})  # default epsilon 0.001
    assert iou(fill(simplified["polygons"], height, width), mask) >= 0.97
    assert sum(map(len, simplified["polygons"])) < sum(map(len, polygons["polygons"]))
    assert interactor.handle({**body, "output": "box"}) == {"box": list(mask_box(mask))}
    for bad in ({"output": "svg"}, {"output": "polygon", "epsilon_factor": -1}, {"epsilon_factor": "x"}):
        with pytest.raises(RequestError):
            interactor.handle({**body, **bad})
