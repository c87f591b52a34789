"""Procedural interactive-segmentation data: textured objects on textured backgrounds.

Each sample is one RGB image with several occluding objects and the exact visible mask of one of
them (the *target*). Object and background textures are random crops of permissively licensed
photographs bundled with scikit-image, randomly scaled, rotated, flipped and colour-jittered, so
that a model trained on it learns "segment the coherent textured region under the click" instead
of "segment the flat-coloured blob".

Determinism: ``make_sample(split, seed, index, size)`` is a pure function of its arguments. The
random stream is ``np.random.SeedSequence([split tag, seed, index, H, W])`` with one distinct tag
per split, so train and held-out streams never coincide whatever the seeds. The texture photos are
split into two disjoint groups (``TEXTURE_SPLITS``), so held-out images contain no pixel source
seen in training.

Speed: about 15–16 ms per 256x256 sample on one core of the development machine (see the report
in ``__main__``: ``python -m interformer_edge.training.synth``).

Only numpy, scipy and scikit-image are used (workstation/training dependencies).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage as ndi

# --------------------------------------------------------------------------------------------
# Texture sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextureSource:
    """One photograph from ``skimage.data`` with its provenance as stated by scikit-image.

    ``loader`` is the name of the ``skimage.data`` function (all are bundled files, no download).
    ``crop`` optionally restricts sampling to a region ``(y0, y1, x0, x1)`` of the photo (e.g. the
    lit disc of the retina image, whose black corners carry no texture).
    """

    loader: str
    description: str
    licence: str
    crop: tuple[int, int, int, int] | None = None


# Licences as stated in the docstrings of ``skimage.data`` (scikit-image 0.26; the data README in
# the wheel is a stub). Images whose docstring states no licence (moon, page, colorwheel, the
# Middlebury motorcycle pair, logo) are deliberately not used.
TEXTURE_SOURCES: Final[dict[str, TextureSource]] = {
    # -- train group --------------------------------------------------------------------------
    "astronaut": TextureSource(
        "astronaut", "Eileen Collins, NASA Great Images", "public domain (no known copyright restrictions)"
    ),
    "coffee": TextureSource(
        "coffee", "Coffee cup, Pikolo Espresso Bar, photo Rachel Michetti", "CC0 (no copyright restrictions)"
    ),
    "rocket": TextureSource("rocket", "DSCOVR launch on Falcon 9, SpaceX", "public domain"),
    "hubble_deep_field": TextureSource(
        "hubble_deep_field", "Hubble eXtreme Deep Field, NASA/HubbleSite", "public domain (NASA)"
    ),
    "retina": TextureSource(
        "retina", "Fundus photograph, Mikael Häggström (Wikimedia)", "CC0 1.0", crop=(330, 1080, 330, 1080)
    ),
    "brick": TextureSource("brick", "Brick wall, CC0Textures Bricks25", "CC0"),
    "grass": TextureSource("grass", "Grass, linolafett (DeviantArt)", "CC0"),
    "camera": TextureSource("camera", "Cameraman, photo Lav Varshney", "CC0 (no copyright restrictions)"),
    "coins": TextureSource("coins", "Greek coins from Pompeii, Brooklyn Museum", "no known copyright restrictions"),
    "clock": TextureSource("clock", "Motion-blurred clock, Stefan van der Walt", "public domain"),
    # -- held-out group -----------------------------------------------------------------------
    "chelsea": TextureSource(
        "chelsea", "Chelsea the cat, photo Stefan van der Walt", "CC0 (no copyright restrictions)"
    ),
    "immunohistochemistry": TextureSource(
        "immunohistochemistry", "IHC staining, CMMI", "no known copyright restrictions"
    ),
    "gravel": TextureSource("gravel", "Gravel, CC0Textures Gravel04", "CC0"),
    "cell": TextureSource("cell", "Cell in saline (qpformat), Paul Müller et al.", "CC0"),
    "text": TextureSource("text", "Corner text image (Wikipedia)", "public domain"),
}

# Disjoint texture groups. Train keeps the richer colour photos (astronaut, coffee, rocket); the
# held-out split gets a different fur/tissue/stone/cell/text mix so that evaluation measures
# generalisation to unseen appearance, not memorised crops.
TEXTURE_SPLITS: Final[dict[str, tuple[str, ...]]] = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "retina",
        "brick",
        "grass",
        "camera",
        "coins",
        "clock",
    ),
    "heldout": ("chelsea", "immunohistochemistry", "gravel", "cell", "text"),
}
SPLITS: Final[tuple[str, ...]] = tuple(TEXTURE_SPLITS)

# Distinct SeedSequence namespaces: the same (seed, index) gives unrelated samples per split.
_SPLIT_TAG: Final[dict[str, int]] = {"train": 0x5EED_7A1, "heldout": 0x5EED_4E1D}

# Promised range of the target's visible area as a fraction of the image area.
MIN_AREA_FRACTION: Final[float] = 0.03
MAX_AREA_FRACTION: Final[float] = 0.60
# Occluders may hide at most this share of the target (otherwise the "object" is just fragments).
_MIN_VISIBLE_SHARE: Final[float] = 0.45
# Stroke widths of thin parts, in pixels.
_THIN_WIDTH: Final[tuple[float, float]] = (3.0, 10.0)


def texture_names(split: str) -> tuple[str, ...]:
    """Names of the texture photos used by ``split`` ("train" or "heldout")."""
    _check_split(split)
    return TEXTURE_SPLITS[split]


def _check_split(split: str) -> None:
    if split not in TEXTURE_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


@functools.cache
def _load_texture(name: str) -> np.ndarray:
    """Photo ``name`` as float32 in [0, 1]: (H, W, 3) for colour, (H, W) for grey sources.

    Cached per process (DataLoader workers each load once, ~25 MB for all photos).
    """
    import skimage.data  # local import: only the generator needs skimage

    src = TEXTURE_SOURCES[name]
    img = np.asarray(getattr(skimage.data, src.loader)())
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if src.crop is not None:
        y0, y1, x0, x1 = src.crop
        img = img[y0:y1, x0:x1]
    # Keep grey photos single-channel: warping one channel is 3x cheaper, colour is added later.
    return np.ascontiguousarray(img, dtype=np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------------------------


def _warp_crop(rng: np.random.Generator, src: np.ndarray, h: int, w: int) -> np.ndarray:
    """Random scaled/rotated/flipped crop of ``src`` ((Hs, Ws) or (Hs, Ws, C) float32).

    Returns (h, w) or (h, w, C) float32. Bilinear sampling; mirror padding only when the crop
    footprint cannot fit inside the photo.
    """
    hs, ws = src.shape[:2]
    # Source pixels per output pixel: <1 magnifies (smoother texture), >1 shrinks (finer texture).
    scale = math.exp(rng.uniform(math.log(0.45), math.log(1.8)))
    # Keep the rotated footprint inside the photo where possible to avoid visible mirror seams.
    half_diag = 0.5 * math.hypot(h, w)
    scale = min(scale, 0.5 * min(hs, ws) / max(half_diag, 1.0))
    theta = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    mat = scale * np.array([[c, -s], [s, c]])
    if rng.random() < 0.5:
        mat[:, 1] *= -1.0  # horizontal flip
    rad = scale * half_diag
    cy = rng.uniform(min(rad, hs / 2), max(hs - rad, hs / 2))
    cx = rng.uniform(min(rad, ws / 2), max(ws - rad, ws / 2))
    offset = np.array([cy, cx]) - mat @ np.array([(h - 1) / 2, (w - 1) / 2])
    if src.ndim == 2:
        return ndi.affine_transform(src, mat, offset=offset, output_shape=(h, w), order=1, mode="mirror")
    out = np.empty((h, w, src.shape[2]), np.float32)
    for ch in range(src.shape[2]):
        ndi.affine_transform(src[..., ch], mat, offset=offset, output=out[..., ch], order=1, mode="mirror")
    return out


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, float32 (3,) in [0, 1], biased away from pure greys."""
    return rng.uniform(0.0, 1.0, 3).astype(np.float32) ** rng.uniform(0.6, 1.6)


def _colourise(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    """Map a grey texture (h, w) to RGB (h, w, 3) float32, usually as a random duotone."""
    if rng.random() < 0.25:
        return np.repeat(grey[..., None], 3, axis=2)
    dark, light = _random_colour(rng) * 0.6, 0.4 + 0.6 * _random_colour(rng)
    if rng.random() < 0.3:
        dark, light = light, dark
    return dark + grey[..., None] * (light - dark)


# RGB <-> YIQ: hue rotation is a rotation of the (I, Q) chroma plane, i.e. one 3x3 matrix.
_RGB2YIQ: Final[np.ndarray] = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64
)
_YIQ2RGB: Final[np.ndarray] = np.linalg.inv(_RGB2YIQ)


def _colour_jitter(rng: np.random.Generator, tex: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Random hue rotation, saturation, contrast and brightness of ``tex`` (h, w, 3) float32.

    All four are folded into one affine colour map so the cost is a single (h*w, 3) @ (3, 3).
    """
    hue = rng.uniform(-math.pi, math.pi) if rng.random() < 0.5 else rng.normal(0.0, 0.3)
    hue *= strength
    sat = math.exp(rng.normal(0.0, 0.35 * strength))
    contrast = math.exp(rng.normal(0.0, 0.25 * strength))
    bright = rng.normal(0.0, 0.12 * strength)
    c, s = math.cos(hue), math.sin(hue)
    chroma = np.array([[1.0, 0.0, 0.0], [0.0, sat * c, -sat * s], [0.0, sat * s, sat * c]])
    m = contrast * (_YIQ2RGB @ chroma @ _RGB2YIQ)
    mean = tex.reshape(-1, 3).mean(axis=0)
    off = mean - m @ mean + bright  # contrast pivots on the mean colour
    out = tex @ m.T.astype(np.float32) + off.astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Linear or radial two-colour gradient, (h, w, 3) float32."""
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    if rng.random() < 0.7:
        a = rng.uniform(0, 2 * math.pi)
        t = 0.5 + 0.5 * (math.cos(a) * yy + math.sin(a) * xx) / math.sqrt(2)
    else:
        cy, cx = rng.uniform(-0.5, 0.5, 2)
        t = np.minimum(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5, 1.0)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    return c0 + t[..., None] * (c1 - c0)


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int, smooth: bool = False) -> np.ndarray:
    """Smooth random field (h, w) float32 in ~[0, 1]: a coarse random grid upsampled.

    Corner-aligned interpolation (``grid_mode=False``) so no border band is clamped to a constant,
    which would otherwise make thresholded outlines run straight along the image axes.
    ``smooth`` uses cubic interpolation (no creases on iso-lines, which matters when the field is
    thresholded into an outline) at quarter resolution, then a cheap bilinear upsample.
    """
    gh, gw = max(2, round(cells * h / max(h, w)) + 1), max(2, round(cells * w / max(h, w)) + 1)
    grid = rng.random((gh, gw), dtype=np.float32)
    if smooth:
        sh, sw = max(gh, -(-h // 4)), max(gw, -(-w // 4))
        grid = ndi.zoom(grid, (sh / gh, sw / gw), order=3, grid_mode=False)
        gh, gw = grid.shape
    return ndi.zoom(grid, (h / gh, w / gw), order=1, grid_mode=False)[:h, :w]


def _noise_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Two-octave procedural noise mapped to a duotone, (h, w, 3) float32."""
    n = 0.65 * _value_noise(rng, h, w, int(rng.integers(3, 8))) + 0.35 * _value_noise(
        rng, h, w, int(rng.integers(12, 40))
    )
    return _colourise(rng, (n - n.min()) / max(float(np.ptp(n)), 1e-3))


def _texture(rng: np.random.Generator, split: str, h: int, w: int, source: str | None) -> np.ndarray:
    """Texture patch (h, w, 3) float32 in [0, 1].

    ``source`` names a photo of the split; ``None`` means a synthetic fill (flat colour, gradient
    or procedural noise) for variety, so the model does not assume every object is photographic.
    """
    if source is None:
        kind = rng.random()
        if kind < 0.35:
            tex = np.empty((h, w, 3), np.float32)
            tex[:] = _random_colour(rng)
            tex += rng.normal(0.0, 0.015, (h, w, 1)).astype(np.float32)  # sensor-like grain
        elif kind < 0.7:
            tex = _gradient(rng, h, w)
        else:
            tex = _noise_texture(rng, h, w)
        return np.clip(tex, 0.0, 1.0)
    # Guard the train/held-out separation: a photo may only be used by its own split.
    if source not in TEXTURE_SPLITS[split]:
        raise ValueError(f"texture {source!r} does not belong to split {split!r}")
    crop = _warp_crop(rng, _load_texture(source), h, w)
    if crop.ndim == 2:
        return _colour_jitter(rng, _colourise(rng, crop), strength=0.6)
    return _colour_jitter(rng, crop)


def _pick_source(rng: np.random.Generator, split: str, p_synthetic: float) -> str | None:
    """A photo name from the split's group, or None (synthetic fill) with probability ``p_synthetic``."""
    if rng.random() < p_synthetic:
        return None
    names = TEXTURE_SPLITS[split]
    return names[int(rng.integers(len(names)))]


# --------------------------------------------------------------------------------------------
# Shapes (polygons in image coordinates, rasterised with a nonzero-winding scanline fill)
# --------------------------------------------------------------------------------------------


def fill_polygons(polys: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons with the nonzero winding rule.

    ``polys``: list of (N, 2) float arrays of (y, x) vertices (implicitly closed). Counter-clockwise
    and clockwise rings cancel, so a reversed ring inside another one makes a hole, and same-
    orientation rings union. Pixel (r, c) is inside when its centre (r, c) is.
    Returns a bool mask of ``shape`` (H, W). Vectorised: cost ~ O(perimeter + H*W); unlike
    ``skimage.draw.polygon`` it does not scale with vertices x pixels.
    """
    h, w = shape
    if not polys:
        return np.zeros(shape, bool)
    p0 = np.concatenate(polys)
    p1 = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    y0, x0, y1, x1 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1]
    # Row r is crossed by an edge when min(y) <= r < max(y) (half-open: shared vertices count once).
    lo = np.clip(np.ceil(np.minimum(y0, y1)), 0, h).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(y0, y1)), 0, h).astype(np.int64)
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(shape, bool)
    edge = np.repeat(np.arange(len(p0)), counts)
    rows = lo[edge] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    dy = y1 - y0
    xs = x0[edge] + (rows - y0[edge]) * (x1 - x0)[edge] / dy[edge]
    cols = np.clip(np.ceil(xs), 0, w).astype(np.int64)  # the crossing affects pixels c >= x
    sign = np.where(dy[edge] > 0, 1, -1)
    diff = np.bincount(rows * (w + 1) + cols, weights=sign, minlength=h * (w + 1))
    return np.cumsum(diff.reshape(h, w + 1)[:, :w], axis=1) != 0


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
class _Shape:
    """A shape centred at the origin: positive (filled) and negative (hole) polygon rings, or a bitmap."""

    polys: list[np.ndarray]
    bitmap: np.ndarray | None = None  # alternative raster representation (noise blobs)


def _scale_to_area(outline: np.ndarray, area: float) -> tuple[np.ndarray, float]:
    """Scale ``outline`` (N, 2) about the origin to enclose ``area`` px; returns it and the factor."""
    k = math.sqrt(area / max(abs(_signed_area(outline)), 1e-9))
    return outline * k, k


def _make_shape(rng: np.random.Generator, area: float) -> _Shape:
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
        return _Shape([*a, _oriented(b_outline + shift)])
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
    return _Shape(polys)


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


def _branches(rng: np.random.Generator, area: float) -> _Shape:
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
    return _Shape([p - centre for p in polys])


def _noise_blob(rng: np.random.Generator, area: float) -> _Shape:
    """Thresholded smooth noise with a centre bias: organic outlines, sometimes holes/bays."""
    side = max(8, round(math.sqrt(area / 0.4)))
    field = _value_noise(rng, side, side, int(rng.integers(2, 6)), smooth=True)
    yy, xx = np.ogrid[-1 : 1 : side * 1j, -1 : 1 : side * 1j]
    field = field - rng.uniform(0.6, 1.2) * (yy**2 + xx**2)  # centre bias: one main body
    thr = np.quantile(field, 1.0 - min(area / side**2, 0.9))
    blob = field > thr
    lab, n = ndi.label(blob)
    if n > 1:  # keep the largest part: one object, one connected region
        blob = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return _Shape([], bitmap=blob)


def _place(shape: _Shape, centre: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Rasterise ``shape`` centred at ``centre`` (y, x) into a (H, W) bool mask (clipped)."""
    h, w = size
    if shape.bitmap is None:
        return fill_polygons([p + np.asarray(centre) for p in shape.polys], size)
    out = np.zeros(size, bool)
    bh, bw = shape.bitmap.shape
    y0, x0 = round(centre[0] - bh / 2), round(centre[1] - bw / 2)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + bh, h), min(x0 + bw, w)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = shape.bitmap[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def _extent(shape: _Shape) -> tuple[float, float, float, float]:
    """Bounding box (ymin, ymax, xmin, xmax) of ``shape`` relative to its placement centre."""
    if shape.bitmap is not None:
        bh, bw = shape.bitmap.shape
        return -bh / 2, bh / 2, -bw / 2, bw / 2
    pts = np.concatenate(shape.polys)
    return float(pts[:, 0].min()), float(pts[:, 0].max()), float(pts[:, 1].min()), float(pts[:, 1].max())


def _random_centre(
    rng: np.random.Generator, shape: _Shape, size: tuple[int, int], near_border: bool
) -> tuple[float, float]:
    """Placement centre (y, x) for ``shape`` in a frame of ``size`` (H, W).

    Normally the whole shape is kept in view when it fits (real photos mostly frame their
    objects); ``near_border`` instead puts the centre close to or past an edge so the object is
    cut by the image border.
    """
    h, w = size
    y0, y1, x0, x1 = _extent(shape)
    if not near_border:
        # Range of centres keeping the shape inside; if it is larger than the frame, centre it
        # roughly (it will be cut on both sides anyway).
        lo_y, hi_y = -y0, h - 1 - y1
        lo_x, hi_x = -x0, w - 1 - x1
        cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else rng.uniform(0.35 * h, 0.65 * h)
        cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else rng.uniform(0.35 * w, 0.65 * w)
        return cy, cx
    cy, cx = rng.uniform(0.0, h), rng.uniform(0.0, w)
    if rng.random() < 0.5:
        cy = rng.uniform(-0.05, 0.12) * h if rng.random() < 0.5 else rng.uniform(0.88, 1.05) * h
    else:
        cx = rng.uniform(-0.05, 0.12) * w if rng.random() < 0.5 else rng.uniform(0.88, 1.05) * w
    return cy, cx


# --------------------------------------------------------------------------------------------
# Scene layout and rendering
# --------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Full-frame bool masks in painting order (bottom to top) and the target's position in it."""

    masks: list[np.ndarray]
    target: int
    visible: np.ndarray  # (H, W) bool: target minus everything painted above it


def _fragmented(mask: np.ndarray, dominant: float = 0.85) -> bool:
    """True if the largest connected part of ``mask`` (H, W) bool holds < ``dominant`` of its area."""
    lab, n = ndi.label(mask)
    if n <= 1:
        return False
    return np.bincount(lab.ravel())[1:].max() < dominant * np.count_nonzero(mask)


def _layout(rng: np.random.Generator, size: tuple[int, int]) -> _Layout:
    """Sample target + distractors until the target's visible area is in the promised range."""
    h, w = size
    img_area = float(h * w)
    for _ in range(12):
        frac = math.exp(rng.uniform(math.log(0.035), math.log(0.6)))
        tshape = _make_shape(rng, frac * img_area)
        tcentre = _random_centre(rng, tshape, size, near_border=rng.random() < 0.2)
        tmask = _place(tshape, tcentre, size)
        t_area = int(tmask.sum())
        if not MIN_AREA_FRACTION * img_area <= t_area <= MAX_AREA_FRACTION * img_area:
            continue
        below: list[np.ndarray] = []
        above: list[np.ndarray] = []
        visible = tmask.copy()
        n_distractors = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.08, 0.17, 0.25, 0.25, 0.15, 0.10]))
        for _ in range(n_distractors):
            dfrac = math.exp(rng.uniform(math.log(0.01), math.log(0.3)))
            dshape = _make_shape(rng, dfrac * img_area)
            if rng.random() < 0.4:
                # Adjacent to the target: touching/overlapping objects are the hard, realistic case.
                ys, xs = np.nonzero(tmask)
                j = int(rng.integers(len(ys)))
                dcentre = (float(ys[j]) + rng.normal(0, 0.1 * h), float(xs[j]) + rng.normal(0, 0.1 * w))
            else:
                dcentre = _random_centre(rng, dshape, size, near_border=rng.random() < 0.3)
            dmask = _place(dshape, dcentre, size)
            if not dmask.any():
                continue
            if rng.random() < 0.5:
                hidden = visible & dmask
                new_visible = visible & ~dmask
                # Occlude only if the target stays a substantial, in-range object.
                if hidden.any() and new_visible.sum() >= max(_MIN_VISIBLE_SHARE * t_area, MIN_AREA_FRACTION * img_area):
                    above.append(dmask)
                    visible = new_visible
                    continue
            below.append(dmask)
        # Occlusion that shatters the target into scattered pieces makes an ill-posed click target:
        # un-occlude (move occluders under the target) until one piece dominates.
        while above and _fragmented(visible):
            below.append(above.pop())
            visible = tmask & ~np.logical_or.reduce(above) if above else tmask.copy()
        if visible.sum() >= MIN_AREA_FRACTION * img_area:
            return _Layout([*below, tmask, *above], len(below), visible)
    # Deterministic fallback (rare): a centred ellipse, no distractors.
    outline, _ = _scale_to_area(_radial_outline(_ellipse_radii(rng)), 0.15 * img_area)
    tmask = fill_polygons([outline + np.array([h / 2, w / 2])], size)
    return _Layout([tmask], 0, tmask.copy())


def _background(rng: np.random.Generator, split: str, size: tuple[int, int], avoid: str | None) -> np.ndarray:
    """Full-frame background (H, W, 3) float32: one texture, a patchwork of several, or a blurred one."""
    h, w = size
    names = [n for n in TEXTURE_SPLITS[split] if n != avoid] or list(TEXTURE_SPLITS[split])
    kind = rng.random()
    if kind < 0.3:
        # Patchwork of 2–3 textures over smooth random regions (e.g. table + wall + floor).
        k = 2 if rng.random() < 0.7 else 3
        fields = np.stack([_value_noise(rng, h, w, int(rng.integers(2, 4)), smooth=True) for _ in range(k)])
        region = np.argmax(fields, axis=0)
        src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
        bg = _texture(rng, split, h, w, src)
        for i in range(1, k):
            # Later patches are textured only over their own bounding box (warping is the cost).
            sel = region == i
            if not sel.any():
                continue
            ys, xs = _bbox(sel)
            src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
            tex = _texture(rng, split, ys.stop - ys.start, xs.stop - xs.start, src)
            sub = sel[ys, xs]
            bg[ys, xs][sub] = tex[sub]
        return bg
    src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
    if kind < 0.45:
        # Defocused background: render small and upsample (cheaper than blurring at full size).
        f = rng.uniform(3.0, 6.0)
        sh, sw = max(4, round(h / f)), max(4, round(w / f))
        small = _texture(rng, split, sh, sw, src)
        return ndi.zoom(small, (h / sh, w / sw, 1), order=1, mode="nearest", grid_mode=True)[:h, :w]
    bg = _texture(rng, split, h, w, src)
    if kind < 0.55:
        bg += rng.standard_normal(bg.shape, dtype=np.float32) * np.float32(rng.uniform(0.02, 0.06))
    return bg


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    """Tight bounding box of a non-empty (H, W) bool mask as slices."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _separate(rng: np.random.Generator, tex: np.ndarray, under: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Push the target's colour away from what lies under it when the two are nearly identical.

    A mean-colour distance below ~0.1 (of 1.0) with equal texture strength makes the target
    invisible; 10 % of such cases are kept on purpose (camouflage is real), the rest get shifted.
    """
    mt, mu = tex[m].mean(axis=0), under[m].mean(axis=0)
    st, su = float(tex[m].std()), float(under[m].std())
    dist = float(np.linalg.norm(mt - mu)) + abs(st - su)
    need = 0.12
    if dist >= need or rng.random() < 0.1:
        return tex
    d = mt - mu
    if np.linalg.norm(d) < 1e-3:
        d = rng.normal(0, 1, 3)
    d = d / np.linalg.norm(d)
    # If the shift would push the target out of [0, 1], go the other way.
    if np.any(mt + d * need > 1.0) or np.any(mt + d * need < 0.0):
        d = -d
    return np.clip(tex + (d * need * 1.3).astype(np.float32), 0.0, 1.0)


def _paint(
    rng: np.random.Generator,
    canvas: np.ndarray,
    mask: np.ndarray,
    tex_src: str | None,
    split: str,
    is_target: bool,
) -> None:
    """Composite one object (texture ``tex_src``) into ``canvas`` (H, W, 3) float32, in place.

    Adds a soft drop shadow and linear shading sometimes, and softens the alpha edge slightly so
    boundaries look photographic; the ground-truth mask itself stays exact.
    """
    if rng.random() < 0.3:
        _shadow(rng, canvas, mask)
    ys, xs = _bbox(mask)
    m = mask[ys, xs]
    bh, bw = m.shape
    tex = _texture(rng, split, bh, bw, tex_src)
    if rng.random() < 0.6:  # directional shading: the object looks lit, not pasted
        gy, gx = rng.normal(0, 0.25, 2)
        ramp = (
            1.0
            + gy * np.linspace(-1, 1, bh, dtype=np.float32)[:, None]
            + gx * np.linspace(-1, 1, bw, dtype=np.float32)[None, :]
        )
        tex = np.clip(tex * ramp[..., None], 0.0, 1.0)
    region = canvas[ys, xs]
    if is_target:
        tex = _separate(rng, tex, region, m)
    alpha = m.astype(np.float32)
    if rng.random() < 0.7:
        alpha = ndi.gaussian_filter(alpha, rng.uniform(0.4, 0.9))
    region += alpha[..., None] * (tex - region)


def _shadow(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> None:
    """Darken ``canvas`` under a blurred, offset copy of ``mask`` (soft cast shadow), in place."""
    h, w = mask.shape
    sigma = rng.uniform(2.0, 6.0)
    dy, dx = (int(v) for v in rng.integers(-8, 9, 2))
    ys, xs = _bbox(mask)
    pad = int(3 * sigma) + 9
    y0, y1 = max(ys.start - pad, 0), min(ys.stop + pad, h)
    x0, x1 = max(xs.start - pad, 0), min(xs.stop + pad, w)
    sub = np.roll(mask[y0:y1, x0:x1], (dy, dx), axis=(0, 1)).astype(np.float32)
    shade = ndi.gaussian_filter(sub, sigma) * rng.uniform(0.25, 0.55)
    canvas[y0:y1, x0:x1] *= (1.0 - shade)[..., None]


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Global camera effects (slight blur, sensor noise) and conversion to uint8 (H, W, 3)."""
    if rng.random() < 0.5:
        s = rng.uniform(0.3, 0.9)
        img = ndi.gaussian_filter(img, (s, s, 0))
    if rng.random() < 0.7:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.004, 0.025))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_sample(split: str, seed: int, index: int, size: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic sample, a pure function of (split, seed, index, size).

    Returns ``(image, mask)``: image uint8 (H, W, 3) RGB, mask bool (H, W) = the visible part of
    the target object, with area fraction in [MIN_AREA_FRACTION, MAX_AREA_FRACTION].
    """
    _check_split(split)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng(np.random.SeedSequence([_SPLIT_TAG[split], int(seed), int(index), h, w]))
    layout = _layout(rng, (h, w))
    target_src = _pick_source(rng, split, p_synthetic=0.15)
    canvas = _background(rng, split, (h, w), avoid=target_src if rng.random() < 0.85 else None)
    for i, m in enumerate(layout.masks):
        if i == layout.target:
            src = target_src
        elif target_src is not None and rng.random() < 0.3:
            src = target_src  # distractor of similar texture: colour/shape must disambiguate
        else:
            src = _pick_source(rng, split, p_synthetic=0.2)
        _paint(rng, canvas, m, src, split, is_target=i == layout.target)
    return _finish(rng, canvas), layout.visible


class SyntheticSegmentation:
    """Indexable synthetic dataset: ``sample(index) -> (image uint8 (H, W, 3), mask bool (H, W))``.

    ``split`` is "train" or "heldout" (disjoint seed namespaces and disjoint texture photos);
    ``size`` is (H, W); ``length`` only serves ``len()`` for DataLoaders, any index >= 0 works.
    """

    def __init__(
        self, split: str = "train", size: tuple[int, int] = (256, 256), seed: int = 0, length: int = 100_000
    ) -> None:
        _check_split(split)
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
        _load_texture(name)
    ds.sample(0)
    t0 = time.perf_counter()
    for i in range(n):
        ds.sample(i)
    return (time.perf_counter() - t0) / n * 1000.0


if __name__ == "__main__":
    print(f"{_benchmark():.1f} ms per 256x256 sample")
