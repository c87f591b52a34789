"""Texture patches for the synthetic scenes: warped, colour-jittered crops of the split's photos, or
synthetic fills (flat colour, gradient, procedural noise)."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy import ndimage as ndi

from .texture_sources import TEXTURE_SPLITS, load_texture
from .value_noise import value_noise


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


def _noise_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Two-octave procedural noise mapped to a duotone, (h, w, 3) float32."""
    n = 0.65 * value_noise(rng, h, w, int(rng.integers(3, 8))) + 0.35 * value_noise(
        rng, h, w, int(rng.integers(12, 40))
    )
    return _colourise(rng, (n - n.min()) / max(float(np.ptp(n)), 1e-3))


def texture(rng: np.random.Generator, split: str, h: int, w: int, source: str | None) -> np.ndarray:
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
    crop = _warp_crop(rng, load_texture(source), h, w)
    if crop.ndim == 2:
        return _colour_jitter(rng, _colourise(rng, crop), strength=0.6)
    return _colour_jitter(rng, crop)


def pick_source(rng: np.random.Generator, split: str, p_synthetic: float) -> str | None:
    """A photo name from the split's group, or None (synthetic fill) with probability ``p_synthetic``."""
    if rng.random() < p_synthetic:
        return None
    names = TEXTURE_SPLITS[split]
    return names[int(rng.integers(len(names)))]
