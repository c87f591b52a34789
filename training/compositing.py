"""Rendering a laid-out scene: textured backgrounds, objects painted with shading, shadows and soft
edges, and the final camera effects."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .texture_sources import TEXTURE_SPLITS
from .textures import texture
from .value_noise import value_noise


def background(rng: np.random.Generator, split: str, size: tuple[int, int], avoid: str | None) -> np.ndarray:
    """Full-frame background (H, W, 3) float32: one texture, a patchwork of several, or a blurred one."""
    h, w = size
    names = [n for n in TEXTURE_SPLITS[split] if n != avoid] or list(TEXTURE_SPLITS[split])
    kind = rng.random()
    if kind < 0.3:
        # Patchwork of 2–3 textures over smooth random regions (e.g. table + wall + floor).
        k = 2 if rng.random() < 0.7 else 3
        fields = np.stack([value_noise(rng, h, w, int(rng.integers(2, 4)), smooth=True) for _ in range(k)])
        region = np.argmax(fields, axis=0)
        src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
        bg = texture(rng, split, h, w, src)
        for i in range(1, k):
            # Later patches are textured only over their own bounding box (warping is the cost).
            sel = region == i
            if not sel.any():
                continue
            ys, xs = _bbox(sel)
            src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
            tex = texture(rng, split, ys.stop - ys.start, xs.stop - xs.start, src)
            sub = sel[ys, xs]
            bg[ys, xs][sub] = tex[sub]
        return bg
    src = names[int(rng.integers(len(names)))] if rng.random() < 0.85 else None
    if kind < 0.45:
        # Defocused background: render small and upsample (cheaper than blurring at full size).
        f = rng.uniform(3.0, 6.0)
        sh, sw = max(4, round(h / f)), max(4, round(w / f))
        small = texture(rng, split, sh, sw, src)
        return ndi.zoom(small, (h / sh, w / sw, 1), order=1, mode="nearest", grid_mode=True)[:h, :w]
    bg = texture(rng, split, h, w, src)
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


def paint(
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
    tex = texture(rng, split, bh, bw, tex_src)
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


def finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Global camera effects (slight blur, sensor noise) and conversion to uint8 (H, W, 3)."""
    if rng.random() < 0.5:
        s = rng.uniform(0.3, 0.9)
        img = ndi.gaussian_filter(img, (s, s, 0))
    if rng.random() < 0.7:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.004, 0.025))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
