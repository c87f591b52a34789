"""Random object shapes centred at the origin, as polygon rings (filled and holes) or a bitmap: ellipses,
blobs, polygons, thin limbs, holes, unions, branches and noise blobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage as ndi

from .value_noise import value_noise

# Stroke widths of thin parts, in pixels.
_THIN_WIDTH: Final[tuple[float, float]] = (3.0, 10.0)


def _signed_area(p: np.ndarray) -> float:
    """Shoelace area of a (N, 2) (y, x) polygon; the sign gives its orientation."""
    y, x = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _oriented(p: np.ndarray, positive: bool = True) -> np.ndarray:
    """``p`` with the requested orientation (positive = filled ring, negative = hole)."""
    return p if (_signed_area(p) >= 0) == positive else p[::-1].copy()


def _radial_outline(radii: np.ndarray) -> np.ndarray:
    """Closed polygon (N, 2) around the origin from radii at N equally spaced angles."""
    t = np.linspace(0.0, 2 * math.pi, len(radii), endpoint=False)
    return np.stack([radii * np.sin(t), radii * np.cos(t)], axis=1)


def _ellipse_radii(rng: np.random.Generator, n: int = 96) -> np.ndarray:
    """Radii of an ellipse (aspect 1–3.5, random rotation) with unit mean-square radius."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False) - rng.uniform(0, math.pi)
    aspect = math.exp(rng.uniform(0.0, math.log(3.5)))
    a, b = math.sqrt(aspect), 1.0 / math.sqrt(aspect)
    return a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)


def _fourier_radii(rng: np.random.Generator, n: int = 128) -> np.ndarray:
    """Smooth star-shaped blob: radius 1 + low-order Fourier perturbation (some lobes, some dents)."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(1, int(rng.integers(3, 8))):
        amp = rng.uniform(0.0, 0.45) / k ** rng.uniform(0.6, 1.4)
        r += amp * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    return np.maximum(r, 0.25)


def _polygon_radii(rng: np.random.Generator, convex: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a random polygon as (angles, radii): convex = on a stretched circle."""
    n = int(rng.integers(3, 9)) if convex else int(rng.integers(5, 15))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    if convex:
        # Points on a circle are in convex position; an affine stretch (below) keeps them so.
        ang = np.sort((np.arange(n) + rng.uniform(-0.35, 0.35, n)) * 2 * math.pi / n)
        rad = np.ones(n)
    else:
        rad = rng.uniform(0.35, 1.0, n)
    return ang, rad


def _stroke(path: np.ndarray, width: float) -> list[np.ndarray]:
    """Thick polyline as positively oriented quads plus octagon joints, list of (N, 2) arrays."""
    polys = []
    half = width / 2
    d = np.diff(path, axis=0)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(norm, 1e-6) * half
    for a, b, n in zip(path[:-1], path[1:], nrm, strict=True):
        polys.append(_oriented(np.stack([a + n, b + n, b - n, a - n])))
    t = np.linspace(0, 2 * math.pi, 8, endpoint=False)
    octagon = np.stack([np.sin(t), np.cos(t)], axis=1) * half * 1.05
    polys.extend(_oriented(p + octagon) for p in path[1:-1])
    return polys


def _limb_path(rng: np.random.Generator, start: np.ndarray, direction: float, length: float) -> np.ndarray:
    """A wiggly path of 2–5 segments from ``start`` heading roughly along ``direction``."""
    n = int(rng.integers(2, 6))
    pts = [start]
    ang = direction
    for _ in range(n):
        ang += rng.normal(0.0, 0.45)
        pts.append(pts[-1] + length / n * np.array([math.sin(ang), math.cos(ang)]))
    return np.stack(pts)


@dataclass
class Shape:
    """A shape centred at the origin: positive (filled) and negative (hole) polygon rings, or a bitmap."""

    polys: list[np.ndarray]
    bitmap: np.ndarray | None = None  # alternative raster representation (noise blobs)


def _scale_to_area(outline: np.ndarray, area: float) -> tuple[np.ndarray, float]:
    """Scale ``outline`` (N, 2) about the origin to enclose ``area`` px; returns it and the factor."""
    k = math.sqrt(area / max(abs(_signed_area(outline)), 1e-9))
    return outline * k, k


def make_shape(rng: np.random.Generator, area: float) -> Shape:
    """Random object shape with roughly ``area`` pixels, centred at the origin.

    Kinds: ellipse, Fourier blob, convex/concave polygon, noise blob (may contain holes),
    any of these with thin limbs (3–10 px strokes), with explicit holes, or a union of two.
    """
    kind = rng.choice(
        ["ellipse", "blob", "convex", "concave", "noise", "limbs", "holes", "union", "branches"],
        p=[0.1, 0.14, 0.1, 0.12, 0.14, 0.14, 0.1, 0.1, 0.06],
    )
    if kind == "noise":
        return _noise_blob(rng, area)
    if kind == "branches":
        return _branches(rng, area)
    if kind == "union":
        a = _make_shape_simple(rng, area * 0.6)
        b_outline, k = _simple_outline(rng, area * 0.45)
        shift = rng.normal(0, 1, 2)
        shift *= 0.8 * k / max(np.linalg.norm(shift), 1e-6)  # overlap: offset below the radius
        return Shape([*a, _oriented(b_outline + shift)])
    body_area = area * (0.75 if kind == "limbs" else 1.0)
    # Holes need a star-shaped body (radius known in every direction), so no polygons there.
    force = {"limbs": None, "holes": str(rng.choice(["ellipse", "blob"]))}.get(kind, kind)
    outline, k = _simple_outline(rng, body_area, force=force)
    polys = [_oriented(outline)]
    if kind == "limbs":
        for _ in range(int(rng.integers(1, 6))):
            d = rng.uniform(0, 2 * math.pi)
            start = rng.normal(0, 0.15 * k, 2)
            path = _limb_path(rng, start, d, k * rng.uniform(1.3, 2.8))
            polys += _stroke(path, rng.uniform(*_THIN_WIDTH))
    elif kind == "holes":
        # Holes are placed well inside the body's minimum radius so they never cut the outline.
        r_min = float(np.min(np.linalg.norm(outline, axis=1)))
        for _ in range(int(rng.integers(1, 4))):
            hr = rng.uniform(0.18, 0.45) * r_min
            if hr < 2.5:
                break
            off = rng.normal(0, 1, 2)
            off *= rng.uniform(0, max(r_min - hr - 3.0, 0.0)) / max(np.linalg.norm(off), 1e-6)
            radii = _fourier_radii(rng, 48)
            hole = _radial_outline(hr * radii / radii.max()) + off  # max radius == hr: stays inside
            polys.append(_oriented(hole, positive=False))
    return Shape(polys)


def _make_shape_simple(rng: np.random.Generator, area: float) -> list[np.ndarray]:
    """One positively oriented ellipse/blob/polygon ring of ``area`` px, as a list of (N, 2) arrays."""
    outline, _ = _simple_outline(rng, area)
    return [_oriented(outline)]


def _simple_outline(rng: np.random.Generator, area: float, force: str | None = None) -> tuple[np.ndarray, float]:
    """Outline (N, 2) of an ellipse, Fourier blob or polygon of ``area`` px, plus its radius scale."""
    kind = force or rng.choice(["ellipse", "blob", "convex", "concave"], p=[0.3, 0.4, 0.15, 0.15])
    if kind == "ellipse":
        outline = _radial_outline(_ellipse_radii(rng))
    elif kind == "blob":
        outline = _radial_outline(_fourier_radii(rng))
    else:
        ang, rad = _polygon_radii(rng, convex=kind == "convex")
        outline = np.stack([rad * np.sin(ang), rad * np.cos(ang)], axis=1)
        # Random anisotropic stretch + rotation: polygons need not be "round".
        st = math.exp(rng.uniform(0, math.log(2.5)))
        a = rng.uniform(0, math.pi)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        outline = outline @ np.diag([st, 1 / st]) @ rot.T
    return _scale_to_area(outline, area)


def _branches(rng: np.random.Generator, area: float) -> Shape:
    """Stick-figure/branch object made only of strokes (tree, wire, letters), small hub at the root."""
    width = rng.uniform(_THIN_WIDTH[0] + 1, _THIN_WIDTH[1] + 4)  # a bit thicker so area is reachable
    total_len = area / width
    polys: list[np.ndarray] = []
    n = int(rng.integers(2, 6))
    hub = _radial_outline(np.full(12, width * rng.uniform(0.8, 2.0)))
    polys.append(_oriented(hub))
    for _ in range(n):
        path = _limb_path(rng, np.zeros(2), rng.uniform(0, 2 * math.pi), total_len / n)
        polys += _stroke(path, width)
        if rng.random() < 0.5:  # a twig branching off the middle of the limb
            mid = path[len(path) // 2]
            polys += _stroke(_limb_path(rng, mid, rng.uniform(0, 2 * math.pi), total_len / n / 2), width * 0.7)
    # Centre the figure on its centroid so placement keeps it roughly in view.
    centre = np.concatenate(polys).mean(axis=0)
    return Shape([p - centre for p in polys])


def _noise_blob(rng: np.random.Generator, area: float) -> Shape:
    """Thresholded smooth noise with a centre bias: organic outlines, sometimes holes/bays."""
    side = max(8, round(math.sqrt(area / 0.4)))
    field = value_noise(rng, side, side, int(rng.integers(2, 6)), smooth=True)
    yy, xx = np.ogrid[-1 : 1 : side * 1j, -1 : 1 : side * 1j]
    field = field - rng.uniform(0.6, 1.2) * (yy**2 + xx**2)  # centre bias: one main body
    thr = np.quantile(field, 1.0 - min(area / side**2, 0.9))
    blob = field > thr
    lab, n = ndi.label(blob)
    if n > 1:  # keep the largest part: one object, one connected region
        blob = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return Shape([], bitmap=blob)


def ellipse_outline(rng: np.random.Generator, area: float) -> np.ndarray:
    """Outline (N, 2) of a random ellipse of ``area`` px centred at the origin."""
    return _scale_to_area(_radial_outline(_ellipse_radii(rng)), area)[0]
