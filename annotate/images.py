"""The served images: a folder listed once, names matched from what annotation tools send, uploads decoded."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.image_io import ImageReadError, image_size, to_rgb_array
from interformer_edge.core.manifest import Manifest
from interformer_edge.core.messages import first_line
from interformer_edge.runtime.encoder import plan_canvas

from .errors import NotFoundError, RequestError

# What a browser shows natively; other formats (tif) are sent as PNG.
BROWSER_SUFFIXES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
# URL path prefix of the image files the server itself hands out (the page and tool URLs use it).
FILE_ROUTE = "/files/"


class ImageFolder:
    """The images of one folder (optionally its sub-folders), named by their relative POSIX paths.

    A link whose target lies outside the folder is not served (a ``passwd.jpg`` pointing at
    ``/etc/passwd`` would otherwise be handed to anyone who asks for it); links inside it are.

    Args:
        root: a folder of images, or one image file.
        recursive: include sub-folders.
        exclude: a folder never listed (the output folder when it lies inside ``root``).
    """

    def __init__(self, root: Path, recursive: bool = False, exclude: Path | None = None) -> None:
        root = Path(root)
        if root.is_file():
            self.root = root.parent
            self.names = [root.name]
            self._inside = root.resolve()  # one image given by name: that file is what is served
        else:
            self.root = root
            self._inside = root.resolve()
            skip = exclude.resolve() if exclude is not None else None
            pattern = "**/*" if recursive else "*"
            self.names = sorted(
                p.relative_to(root).as_posix()
                for p in root.glob(pattern)
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and self._contains(p)
                and not (skip is not None and (skip == p.resolve().parent or skip in p.resolve().parents))
            )
        self._index = {name: i for i, name in enumerate(self.names)}
        self._by_basename: dict[str, list[str]] = {}
        for name in self.names:
            self._by_basename.setdefault(PurePosixPath(name).name, []).append(name)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        return self._index[self.require(name)]

    def require(self, name: str) -> str:
        if name not in self._index:
            raise NotFoundError(f"unknown image {name!r}")
        return name

    def _contains(self, path: Path) -> bool:
        target = path.resolve()
        return target == self._inside or self._inside in target.parents

    def path(self, name: str) -> Path:
        """The file of a served image; checked again on every use, since a link may change after listing."""
        path = self.root / self.require(name)
        if not self._contains(path):
            raise NotFoundError(f"unknown image {name!r}")
        return path

    def media_type(self, name: str) -> str | None:
        """The content type to send the file as, or None when it must be converted for a browser."""
        return BROWSER_SUFFIXES.get(PurePosixPath(name).suffix.lower())

    def match(self, reference: str) -> str | None:
        """The served image a tool's reference means, or None.

        Tried in order: the relative path itself; a URL this server produced (``.../files/<name>``);
        the path of a URL or a Label Studio local-files URL (``?d=<path>``) ending in a served relative
        path; finally a file name that only one served image has.
        """
        reference = reference.strip()
        if reference in self._index:
            return reference
        parts = urlsplit(reference)
        path = unquote(parts.path)
        candidates = [path]
        if FILE_ROUTE in path:
            candidates.insert(0, path.split(FILE_ROUTE, 1)[1])
        candidates += [unquote(v) for v in parse_qs(parts.query).get("d", [])]
        for candidate in candidates:
            pieces = PurePosixPath(candidate).parts
            for start in range(len(pieces)):  # the longest suffix of the path that names a served image
                name = PurePosixPath(*pieces[start:]).as_posix()
                if name in self._index:
                    return name
        for candidate in candidates:
            same = self._by_basename.get(PurePosixPath(candidate).name, [])
            if len(same) == 1:
                return same[0]
        return None


def folder_canvases(folder: ImageFolder, manifest: Manifest, max_side: int | None) -> set[tuple[int, int]]:
    """The padded canvas sizes the folder's images are encoded on (read from the files' headers)."""
    sizes = set()
    for name in folder.names:
        try:
            height, width = image_size(folder.path(name))
        except ImageReadError:
            continue  # an unreadable file is refused when opened
        sizes.add(plan_canvas(manifest, height, width, max_side)[1])
    return sizes


def decode_image(data: bytes, what: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Image file bytes → ``(H, W, 3)`` uint8 RGB; anything that is not a readable image is a 400/415.

    An image of more than ``max_pixels`` pixels is refused (413) from its header, before it is decoded:
    a small file may claim a huge size. Pillow's decompression-bomb limit applies in any case.
    """
    if not data:
        raise RequestError(f"the {what} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise RequestError(
                    f"the {what} is {width}x{height} = {width * height / 1e6:.1f} MP, more than this server's "
                    f"{max_pixels / 1e6:.1f} MP limit (--max-pixels)",
                    status=413,
                )
            image.load()
            return to_rgb_array(image)
    except Image.DecompressionBombError as err:
        raise RequestError(f"the {what} is too large an image: {err}", status=413) from None
    except UnidentifiedImageError:
        raise RequestError(f"the {what} is not an image file of a known format", status=415) from None
    except (OSError, SyntaxError, ValueError, ImageReadError) as err:
        raise RequestError(f"the {what} is not a readable image ({first_line(err)})", status=415) from None
