"""The bundled scikit-image photographs used as textures: provenance, licences, the disjoint
train/held-out groups and their cached loader."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np


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


def texture_names(split: str) -> tuple[str, ...]:
    """Names of the texture photos used by ``split`` ("train" or "heldout")."""
    check_split(split)
    return TEXTURE_SPLITS[split]


def check_split(split: str) -> None:
    if split not in TEXTURE_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


@functools.cache
def load_texture(name: str) -> np.ndarray:
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
