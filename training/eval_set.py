"""Held-out evaluation set and calibration set in the GrabCut/Berkeley folder layout, and the demo photos.

Layout written by :func:`write_eval_set`::

    <root>/img/<name>.jpg     RGB image (JPEG quality 90 by default, or lossless PNG)
    <root>/gt/<name>.png      8-bit greyscale mask, 0 = background, 255 = object
    <root>/list/val.txt       one <name> per line

Evaluation images come from the ``heldout`` split of :mod:`.synth` (texture photos never used in
training, separate seed namespace), with sizes drawn per image between 256 and 480 px per side
(mostly non-square). The INT8 calibration set (``assets/calib``) is written the same way from the
``train`` split with its own seed, so calibration never sees a held-out texture or scene.
Everything is a pure function of ``(split, count, seed)``.

Run ``python -m interformer_edge.training.eval_set`` to regenerate ``assets/heldout``,
``assets/calib`` and ``assets/photos`` of the repository (paths relative to this file, i.e. an
editable install).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from .synth import make_sample

EVAL_MIN_SIDE: Final[int] = 256
EVAL_MAX_SIDE: Final[int] = 480
DEFAULT_EVAL_SEED: Final[int] = 20240
DEFAULT_CALIB_SEED: Final[int] = 70707
DEFAULT_CALIB_COUNT: Final[int] = 24
# Own SeedSequence namespace for the per-image sizes (independent of the sample content stream).
_SIZE_TAG: Final[int] = 0x512E

_REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[1]
DEFAULT_EVAL_ROOT: Final[Path] = _REPO_ROOT / "assets" / "heldout"
DEFAULT_CALIB_ROOT: Final[Path] = _REPO_ROOT / "assets" / "calib"
DEFAULT_PHOTO_ROOT: Final[Path] = _REPO_ROOT / "assets" / "photos"


def eval_image_size(seed: int, index: int) -> tuple[int, int]:
    """(H, W) of evaluation image ``index``: each side uniform in [256, 480], deterministic."""
    rng = np.random.default_rng(np.random.SeedSequence([_SIZE_TAG, int(seed), int(index)]))
    h, w = rng.integers(EVAL_MIN_SIDE, EVAL_MAX_SIDE + 1, size=2)
    return int(h), int(w)


def eval_name(index: int) -> str:
    """File stem of evaluation image ``index``."""
    return f"synth_{index:04d}"


def write_eval_set(
    root: str | Path,
    count: int = 100,
    seed: int = DEFAULT_EVAL_SEED,
    image_format: str = "jpg",
    jpeg_quality: int = 90,
    split: str = "heldout",
) -> list[str]:
    """Write ``count`` samples of ``split`` (held-out by default) to ``root`` in the GrabCut/Berkeley layout.

    ``image_format`` is "jpg" (default; ~10x smaller than PNG for these textured images, the
    masks stay exact) or "png" (lossless). Returns the list of names, in ``list/val.txt`` order.
    Existing files with the same names are overwritten; other files are left alone.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    root = Path(root)
    for sub in ("img", "gt", "list"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = eval_name(i)
        image, mask = make_sample(split, seed, i, eval_image_size(seed, i))
        img = Image.fromarray(image)
        if image_format == "jpg":
            img.save(root / "img" / f"{name}.jpg", quality=jpeg_quality, subsampling=0)
        else:
            img.save(root / "img" / f"{name}.png", optimize=True)
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(root / "gt" / f"{name}.png", optimize=True)
        names.append(name)
    (root / "list" / "val.txt").write_text("".join(f"{n}\n" for n in names))
    return names


def folder_size(root: str | Path) -> int:
    """Total size in bytes of all files below ``root``."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# Demo photos
# --------------------------------------------------------------------------------------------

# (skimage.data loader, title, author/source, licence) as stated in scikit-image's docstrings.
DEMO_PHOTOS: Final[dict[str, tuple[str, str, str, str]]] = {
    "chelsea": (
        "chelsea",
        "Chelsea the cat",
        "Stefan van der Walt (photographer)",
        "CC0 — no copyright restrictions",
    ),
    "coffee": (
        "coffee",
        "Coffee cup",
        "Rachel Michetti (photographer), courtesy of Pikolo Espresso Bar",
        "CC0 — no copyright restrictions",
    ),
    "astronaut": (
        "astronaut",
        "Eileen Collins, NASA astronaut",
        "NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "Public domain — no known copyright restrictions",
    ),
    "rocket": (
        "rocket",
        "Launch of DSCOVR on Falcon 9",
        "SpaceX (https://www.flickr.com/photos/spacexphotos/16511594820/)",
        "Public domain — released by SpaceX",
    ),
}


def write_demo_photos(root: str | Path = DEFAULT_PHOTO_ROOT, max_side: int = 512, quality: int = 90) -> list[Path]:
    """Save the demo photos (long side <= ``max_side``) as JPEG plus ``ATTRIBUTION.md`` into ``root``."""
    import skimage.data  # workstation dependency, only needed to regenerate the assets

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [
        "# Demo photos",
        "",
        "Sample images bundled with scikit-image (`skimage.data`), resized so that the long side is at",
        f"most {max_side} px and saved as JPEG (quality {quality}) by",
        "`python -m interformer_edge.training.eval_set`.",
        "Source, author and licence as stated in the scikit-image documentation of each image.",
        "",
        "| File | Image | Author / source | Licence | `skimage.data` function |",
        "|---|---|---|---|---|",
    ]
    for name, (loader, title, author, licence) in DEMO_PHOTOS.items():
        img = Image.fromarray(np.asarray(getattr(skimage.data, loader)())[..., :3])
        scale = max_side / max(img.size)
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        path = root / f"{name}.jpg"
        img.save(path, quality=quality)
        written.append(path)
        lines.append(f"| `{name}.jpg` ({img.width}x{img.height}) | {title} | {author} | {licence} | `{loader}()` |")
    lines.append("")
    (root / "ATTRIBUTION.md").write_text("\n".join(lines))
    return written


def main(argv: list[str] | None = None) -> None:
    """CLI: write the held-out evaluation set and the demo photos."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_EVAL_ROOT, help="evaluation set folder")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED)
    ap.add_argument("--format", choices=("jpg", "png"), default="jpg", dest="image_format")
    ap.add_argument("--calib-root", type=Path, default=DEFAULT_CALIB_ROOT, help="calibration set folder")
    ap.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTO_ROOT, help="demo photo folder")
    ap.add_argument("--no-photos", action="store_true", help="skip the demo photos")
    args = ap.parse_args(argv)
    names = write_eval_set(args.root, args.count, args.seed, args.image_format)
    print(f"wrote {len(names)} samples to {args.root} ({folder_size(args.root) / 1e6:.2f} MB)")
    names = write_eval_set(args.calib_root, args.calib_count, DEFAULT_CALIB_SEED, args.image_format, split="train")
    print(f"wrote {len(names)} calibration samples to {args.calib_root} ({folder_size(args.calib_root) / 1e6:.2f} MB)")
    if not args.no_photos:
        paths = write_demo_photos(args.photos)
        print(f"wrote {len(paths)} photos to {args.photos} ({folder_size(args.photos) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
