"""Masks as polygons and boxes, for the tools and formats that want outlines instead of pixels.

Pure numpy (no OpenCV: the lean install stays small; ``opencv-python-headless`` would add ~50 MB for two
functions). A mask's outline is traced along the **pixel edges** (the cracks between a set and an unset
pixel), so vertices sit on pixel corners, ``0 <= x <= W``, ``0 <= y <= H``: pixel ``(row, col)`` is the
square ``[col, col + 1] x [row, row + 1]``. Filling the outlines with the even-odd rule, sampling at
pixel centres, gives the mask back exactly (:func:`rasterize`); OpenCV's ``findContours`` instead puts
vertices on the centres of the border pixels, half a pixel inside the object.

* :func:`mask_polygons`: one :class:`Polygon` per part (8-connected set pixels, as OpenCV counts
  them), each an outer ring plus its holes; ``epsilon_factor`` simplifies every ring with
  Douglas-Peucker at ``epsilon_factor x`` that ring's perimeter, as ``cv2.approxPolyDP(c,
  epsilon_factor * cv2.arcLength(c, True), True)`` does (X-AnyLabeling's "mask fineness").
* :meth:`Polygon.bridged`: the part as ONE ring, each hole joined to the outline by a zero-width cut
  (there and back along the same segment), for formats without holes (X-AnyLabeling and CVAT
  shapes, COCO polygons, whose parts pycocotools unites). Even-odd and non-zero filling both give the
  part with its holes.
* :func:`mask_box`: the tight box ``(x1, y1, x2, y2)`` in the same corner coordinates.

Rings are ``(N, 2)`` float arrays of ``x, y``, not closed (the last vertex is not the first again);
outer rings run clockwise on screen (positive area with ``y`` down), holes counter-clockwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_EPSILON_FACTOR = 0.001  # X-AnyLabeling's default "mask fineness" (its slider: 0.0001 to 0.01)
# What a tool answer carries at most: the largest parts and holes of a mask (a noisy mask can have tens
# of thousands of each, and joining every hole into its part costs a pass over the outline per hole).
TOOL_MAX_PARTS = 64
TOOL_MAX_HOLES = 256

# Edge directions, clockwise on screen (y down): a right turn is +1, a left turn -1 (mod 4).
_EAST, _SOUTH, _WEST, _NORTH = range(4)
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)  # (dx, dy) of each direction
# The set pixel on the right of an edge, as (d_col, d_row) from the edge's start vertex.
_RIGHT_PIXEL = np.array([[0, 0], [-1, 0], [-1, -1], [0, -1]], dtype=np.int64)


@dataclass(frozen=True)
class Polygon:
    """One part of a mask: its outer ring and the rings of its holes (pixel-corner coordinates)."""

    outer: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    @property
    def area(self) -> float:
        """Pixels covered: the outer ring's area less the holes'."""
        return ring_area(self.outer) + sum(ring_area(h) for h in self.holes)  # holes' areas are negative

    def box(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)`` of the outer ring."""
        (x1, y1), (x2, y2) = self.outer.min(axis=0), self.outer.max(axis=0)
        return float(x1), float(y1), float(x2), float(y2)

    def bridged(self) -> np.ndarray:
        """The part as one ring: each hole (top-most first) spliced in through a zero-width vertical cut
        from its top-most vertex up to the first edge above it of the ring built so far (the outline, or
        a hole already joined), there and back. The ring starts at a vertex it passes only once."""
        ring = self.outer
        for hole in sorted(self.holes, key=lambda h: float(h[:, 1].min())):
            top = int(np.lexsort((hole[:, 0], hole[:, 1]))[0])
            px, py = hole[top]
            start, end = ring, np.roll(ring, -1, axis=0)
            low, high = np.minimum(start[:, 0], end[:, 0]), np.maximum(start[:, 0], end[:, 0])
            spans = (low <= px) & (px < high)  # edges a vertical line through px crosses (each vertex once)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = start[:, 1] + (px - start[:, 0]) * (end[:, 1] - start[:, 1]) / (end[:, 0] - start[:, 0])
            above = np.flatnonzero(spans & (at <= py))
            if above.size == 0:  # not inside the ring (a hole moved by simplification): cut to the nearest vertex
                i = int(np.argmin(((ring - hole[top]) ** 2).sum(axis=1)))
                point = ring[i]
            else:
                i = int(above[np.argmax(at[above])])
                point = np.array([px, at[i]])
            loop = np.concatenate([hole[top:], hole[: top + 1]])  # the hole from its top-most vertex round to it
            ring = np.concatenate([ring[: i + 1], point[None], loop, point[None], ring[i + 1 :]])
        if self.holes:  # start at a vertex the ring passes once: tools take a repeat of the first vertex as "closed"
            _, first, counts = np.unique(ring, axis=0, return_index=True, return_counts=True)
            ring = np.roll(ring, -int(first[counts == 1].min()), axis=0)
        return ring


def ring_area(ring: np.ndarray) -> float:
    """Signed area (shoelace): positive for a clockwise ring on screen (an outline), negative for a hole."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0


def ring_perimeter(ring: np.ndarray) -> float:
    return float(np.hypot(*(np.roll(ring, -1, axis=0) - ring).T).sum())


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight box of the set pixels, ``(x1, y1, x2, y2)`` in corner coordinates (``x2 = last column + 1``);
    None for an empty mask. COCO's ``bbox`` is ``[x1, y1, x2 - x1, y2 - y1]``."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_polygons(
    mask: np.ndarray,
    epsilon_factor: float = 0.0,
    min_area: float = 0.0,
    max_parts: int | None = None,
    max_holes: int | None = None,
) -> list[Polygon]:
    """The parts of ``mask`` as polygons, the largest outline first.

    Args:
        mask: ``(H, W)``, non-zero is set.
        epsilon_factor: simplify each ring (Douglas-Peucker) to within ``epsilon_factor x`` its perimeter;
            0 keeps the exact outline (only vertices where it turns).
        min_area: drop parts and holes of fewer pixels than this (their outline's area).
        max_parts: keep at most this many parts (the largest); ``max_holes``: at most this many holes
            in all (the largest). A noisy mask can have tens of thousands of each; tools bound them.

    Raises:
        ValueError: a mask that is not 2-d, or a negative or non-finite ``epsilon_factor``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-d (H, W), got shape {mask.shape}")
    if not (math.isfinite(epsilon_factor) and epsilon_factor >= 0.0):
        raise ValueError(f"epsilon_factor must be a finite number >= 0, got {epsilon_factor!r}")
    box = mask_box(mask)
    if box is None:
        return []
    x1, y1, x2, y2 = box
    crop = np.asarray(mask[y1:y2, x1:x2], dtype=bool)
    points, bounds, pixels, areas = _trace(crop)
    large = np.abs(areas) >= max(min_area, 0.5)  # every traced ring has an area of at least 1
    outers = np.flatnonzero(large & (areas > 0))
    outers = outers[np.argsort(-areas[outers], kind="stable")][:max_parts]
    holes = np.flatnonzero(large & (areas < 0))
    holes = holes[np.argsort(areas[holes], kind="stable")][:max_holes]

    def ring(k: int) -> np.ndarray:
        return points[bounds[k] : bounds[k + 1]]

    # Which part a hole belongs to: its ring runs along pixels of the part around it, and the smallest
    # outline holding such a pixel is that part's (a part nested inside the hole holds none). Painting
    # the filled outlines largest first leaves each pixel with the smallest one that holds it.
    part_holes: list[list[np.ndarray]] = [[] for _ in outers]
    if holes.size:
        owner = np.full(crop.shape, -1, dtype=np.int32)
        for index, k in enumerate(outers):
            outline = ring(k)
            (left, top), (right, bottom) = outline.min(axis=0).astype(int), outline.max(axis=0).astype(int)
            owner[top:bottom, left:right][rasterize([outline - (left, top)], bottom - top, right - left)] = index
        for k in holes:
            index = owner[int(pixels[k, 1]), int(pixels[k, 0])]
            if index >= 0:  # -1: the hole of a part left out
                part_holes[index].append(ring(k))
    offset = np.array([x1, y1], dtype=np.float64)
    polygons = []
    for k, inner in zip(outers, part_holes, strict=True):
        kept = [simplify_ring(h + offset, epsilon_factor) for h in inner]
        polygons.append(Polygon(simplify_ring(ring(k) + offset, epsilon_factor), tuple(kept)))
    return polygons


def _trace(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every boundary ring of ``mask`` along pixel edges, set pixels on the right of each edge, turning
    left where two set pixels touch only at a corner (8-connected parts); see :func:`_cycles` for what
    comes back (the set pixel of a ring is a ``(col, row)`` it runs along)."""
    height, width = mask.shape
    padded = np.pad(mask, 1)
    core = padded[1:-1, 1:-1]
    starts = []  # per direction: the (x, y) start vertices of its edges
    for direction, (d_row, d_col), (x0, y0) in (
        (_EAST, (-1, 0), (0, 0)),  # top side of a set pixel under an unset one, start at its top-left corner
        (_SOUTH, (0, 1), (1, 0)),  # right side, from the top-right corner
        (_WEST, (1, 0), (1, 1)),  # bottom side, from the bottom-right corner
        (_NORTH, (0, -1), (0, 1)),  # left side, from the bottom-left corner
    ):
        neighbour = padded[1 + d_row : 1 + d_row + height, 1 + d_col : 1 + d_col + width]
        rows, cols = np.nonzero(core & ~neighbour)
        starts.append((np.full(rows.size, direction, dtype=np.int64), cols + x0, rows + y0))
    direction = np.concatenate([s[0] for s in starts])
    x = np.concatenate([s[1] for s in starts]).astype(np.int64)
    y = np.concatenate([s[2] for s in starts]).astype(np.int64)
    count = direction.size
    stride = width + 1
    vertices = (height + 1) * stride

    def key(d: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
        return d * vertices + vy * stride + vx

    keys = key(direction, x, y)
    order = np.argsort(keys)
    sorted_keys = keys[order]

    def find(d: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
        """Index of the edge leaving (vx, vy) in direction d, or -1."""
        wanted = key(d, vx, vy)
        at = np.minimum(np.searchsorted(sorted_keys, wanted), count - 1)
        return np.where(sorted_keys[at] == wanted, order[at], -1)

    end_x, end_y = x + _STEP[direction, 0], y + _STEP[direction, 1]
    following = find((direction + 3) % 4, end_x, end_y)  # left turn first: joins parts meeting at a corner
    for turn in (0, 1):  # then straight on, then a right turn
        missing = following < 0
        following[missing] = find((direction[missing] + turn) % 4, end_x[missing], end_y[missing])
    return _cycles(following, direction, x, y)


def _cycles(
    following: np.ndarray, direction: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the successor permutation into its cycles (pointer jumping, all in numpy) and keep each
    cycle's corners (where the direction changes), in walking order: the corners' ``(x, y)``, where each
    cycle's corners start and end (``C + 1`` offsets), a set pixel per cycle and each cycle's signed area."""
    count = following.size
    steps = max(1, int(count).bit_length())
    label = np.arange(count)
    jump = following.copy()
    for _ in range(steps):  # label: the smallest edge index of the cycle
        label = np.minimum(label, label[jump])
        jump = jump[jump]
    # Cut each cycle before its smallest edge and rank every edge by its distance to the cut.
    last = following == label
    jump = np.where(last, np.arange(count), following)
    distance = np.where(last, 0, 1)
    for _ in range(steps):
        distance = distance + distance[jump]
        jump = jump[jump]
    previous = np.empty(count, dtype=np.int64)
    previous[following] = np.arange(count)
    corner = direction != direction[previous]
    walk = np.lexsort((-distance, label))  # by cycle, then from its smallest edge on
    walk = walk[corner[walk]]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(label[walk])) + 1))
    bounds = np.append(starts, walk.size)
    points = np.stack([x[walk], y[walk]], axis=1).astype(np.float64)
    first = walk[starts]
    pixels = np.stack([x[first], y[first]], axis=1) + _RIGHT_PIXEL[direction[first]]
    following_corner = np.arange(1, walk.size + 1)  # the next corner of the same cycle
    following_corner[bounds[1:] - 1] = starts
    shoelace = points[:, 0] * points[following_corner, 1] - points[following_corner, 0] * points[:, 1]
    areas = np.add.reduceat(shoelace, starts) / 2.0
    return points, bounds, pixels, areas


def simplify_ring(ring: np.ndarray, epsilon_factor: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring at ``epsilon_factor x`` its perimeter (OpenCV's ``approxPolyDP``
    usage): split at the first vertex and the one farthest from it, simplify both chains. A ring that
    would collapse below 3 vertices is kept as it is."""
    if epsilon_factor <= 0.0 or len(ring) <= 3:
        return ring
    epsilon = epsilon_factor * ring_perimeter(ring)
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(axis=1)))
    closed = np.concatenate([ring, ring[:1]])
    keep = np.zeros(len(closed), dtype=bool)
    keep[[0, far, len(ring)]] = True
    stack = [(0, far), (far, len(ring))]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        a, b = closed[first], closed[last]
        inner = closed[first + 1 : last]
        ab = b - a
        length = math.hypot(*ab)
        if length == 0.0:
            distance = np.hypot(*(inner - a).T)
        else:
            distance = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / length
        k = int(np.argmax(distance))
        if distance[k] > epsilon:
            middle = first + 1 + k
            keep[middle] = True
            stack += [(first, middle), (middle, last)]
    simplified = closed[:-1][keep[:-1]]
    return simplified if len(simplified) >= 3 else ring


def rasterize(rings: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixel centres inside ``rings`` by the even-odd rule (all rings together).

    The inverse of :func:`mask_polygons` at ``epsilon_factor=0`` (for the outlines, or the bridged rings).
    """
    parity = np.zeros((height, width + 1), dtype=np.int64)
    for ring in rings:
        ring = np.asarray(ring, dtype=np.float64)
        if len(ring) < 3:
            continue
        start, end = ring, np.roll(ring, -1, axis=0)
        slanted = start[:, 1] != end[:, 1]
        start, end = start[slanted], end[slanted]
        low, high = np.minimum(start[:, 1], end[:, 1]), np.maximum(start[:, 1], end[:, 1])
        first = np.clip(np.ceil(low - 0.5), 0, height).astype(np.int64)  # rows whose centre y + 0.5 is in [low, high)
        stop = np.clip(np.ceil(high - 0.5), 0, height).astype(np.int64)
        spans = stop - first
        if not spans.any():
            continue
        edge = np.repeat(np.arange(len(start)), spans)
        row = np.repeat(first, spans) + (np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans))
        s, e = start[edge], end[edge]
        at = s[:, 0] + (row + 0.5 - s[:, 1]) * (e[:, 0] - s[:, 0]) / (e[:, 1] - s[:, 1])
        column = np.clip(np.ceil(at - 0.5), 0, width).astype(np.int64)  # first pixel whose centre is right of it
        np.add.at(parity, (row, column), 1)
    return (np.cumsum(parity, axis=1)[:, :width] % 2).astype(bool)


def polygon_points(ring: np.ndarray, decimals: int = 2) -> list[list[float]]:
    """A ring as JSON ``[[x, y], ...]`` (integers stay integers)."""
    rounded = np.round(np.asarray(ring, dtype=np.float64), decimals)
    return [[int(v) if float(v).is_integer() else float(v) for v in point] for point in rounded]


def coco_polygons(mask: np.ndarray, epsilon_factor: float = 0.0) -> list[list[float]]:
    """COCO ``segmentation`` polygons (``iscrowd`` 0) of a mask: one flat ``[x1, y1, x2, y2, ...]`` per part,
    its holes joined in (pycocotools unites a segmentation's polygons, so a hole cannot be a polygon of
    its own). At ``epsilon_factor=0`` filling them gives the mask back exactly (:func:`coco_polygons_mask`)."""
    return [[v for point in polygon_points(p.bridged()) for v in point] for p in mask_polygons(mask, epsilon_factor)]


def coco_polygons_mask(segmentation: list[list[float]], height: int, width: int) -> np.ndarray:
    """The ``(H, W)`` mask of COCO polygons (even-odd at pixel centres): the inverse of :func:`coco_polygons`."""
    return rasterize([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation], height, width)
