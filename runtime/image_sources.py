"""Which images an encode run has, and where each one's features go: a folder, one image, or an image list.

>>> jobs = list_jobs(Path("photos"), Path("features"), recursive=True)   # photos/a/cat.jpg → features/a/cat.jpg.npz
>>> jobs = list_file_jobs(Path("photos.txt"), Path("features"))          # paths or URIs, one a line (Ray engine)

A :class:`~.encode_image.Job` names its image by its path relative to the folder (or, for a list, to
the deepest folder common to its entries), so store names never collide. Nothing here imports ray:
image lists are read by the Ray engine, but listing them is plain Python.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote, urlparse

from interformer_edge.core.dataset import IMAGE_SUFFIXES
from interformer_edge.core.image_io import ImageReadError
from interformer_edge.core.messages import first_line

from .encode_image import Job
from .errors import InterFormerRuntimeError
from .features import FEATURE_SUFFIX

LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")  # SOURCE files read as image lists


class ImageListError(InterFormerRuntimeError):
    """An image list that cannot be read."""


def list_jobs(source: Path, out: Path, recursive: bool) -> list[Job]:
    """The images under ``source`` (a folder or one file) and their store paths, sorted by name."""
    if source.is_file():
        return [Job(source, out / (source.name + FEATURE_SUFFIX), source.name)]
    pattern = "**/*" if recursive else "*"
    out_resolved = out.resolve()
    jobs = []
    for path in sorted(source.glob(pattern)):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if out_resolved in path.resolve().parents:  # never encode the store's own folder
            continue
        rel = path.relative_to(source)
        jobs.append(Job(path, out / rel.with_name(rel.name + FEATURE_SUFFIX), rel.as_posix()))
    return jobs


def is_list_file(source: Path) -> bool:
    """Whether ``source`` is an image list (a ``.txt`` / ``.lst`` / ``.list`` file) rather than an image."""
    return source.is_file() and source.suffix.lower() in LIST_SUFFIXES


def _is_uri(entry: str) -> bool:
    scheme = urlparse(entry).scheme
    return len(scheme) > 1  # one letter: a Windows drive, not a scheme


def list_file_jobs(list_file: Path, out: Path) -> list[Job]:
    """The images named in ``list_file`` (one path or URI a line; blank lines and ``#`` comments skipped).

    Relative paths are relative to the list file's folder; ``file://`` URIs are local paths; other
    URIs (``s3://``, ``gs://``, ``hdfs://``, …) are read with pyarrow's filesystems on the nodes.
    Each image is stored under its path relative to the deepest folder common to all entries
    (``/data/a/cat.jpg`` and ``/data/b/dog.jpg`` → ``a/cat.jpg.npz``, ``b/dog.jpg.npz``; a URI
    counts as the path ``/scheme/host/path``), so names never collide. Duplicate entries are listed once.

    Raises:
        ImageListError: the list cannot be read.
    """
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ImageListError(f"cannot read the image list {list_file}: {first_line(err)}") from None
    images: dict[str, Path | str] = {}  # key (absolute path, or host + path of a URI) -> what to read
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parsed = urlparse(entry)
        if _is_uri(entry) and parsed.scheme != "file":
            images.setdefault(f"/{parsed.scheme}/{parsed.netloc}{parsed.path}", entry)  # absolute, like paths
            continue
        path = Path(unquote(parsed.path)) if _is_uri(entry) else Path(entry)
        path = (list_file.parent / path).resolve() if not path.is_absolute() else path
        images.setdefault(path.as_posix(), path)
    if not images:
        return []
    common = posixpath.commonpath([posixpath.dirname(key) for key in images])  # every key is absolute
    jobs = [
        Job(image, out / (posixpath.relpath(key, common) + FEATURE_SUFFIX), posixpath.relpath(key, common))
        for key, image in images.items()
    ]
    return sorted(jobs, key=lambda job: job.name)


def read_image_bytes(image: Path | str) -> bytes:
    """The bytes of a local image file or of a URI (pyarrow filesystems: s3, gs, hdfs, …).

    Raises:
        ImageReadError: missing or unreadable, with the reason on one line.
    """
    if isinstance(image, Path):
        if not image.is_file():
            raise ImageReadError(f"image not found: {image}")
        return image.read_bytes()
    try:
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(image)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except Exception as err:  # pyarrow raises its own types (ArrowInvalid, OSError, …): one message for all
        raise ImageReadError(f"cannot read {image}: {first_line(err)}") from None
