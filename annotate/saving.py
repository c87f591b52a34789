"""Saved annotations: a PNG per object and one COCO JSON (RLE) for the folder, saved all-or-nothing.

Layout of the output folder::

    annotations.json                    COCO: images, categories (the label names), annotations
    masks/<image path>/<k>_<label>.png  one 0/255 grayscale mask per object, at the photo's size
    .annotations.journal                only while a save commits (or after a crash in it): its renames

Each annotation's ``segmentation`` is a COCO RLE ``{"size": [H, W], "counts": "<compressed>"}``, or with
``segmentation="polygon"`` COCO polygons (one flat ``[x1, y1, ...]`` per part, holes joined in; exact:
filled, they give the mask back), ``iscrowd`` 0, with ``area`` and ``bbox`` from the mask; the clicks
that made it are kept under ``interformer_clicks`` as ``[x, y, positive]``. An image listed in
``images`` counts as done (also with no object: the annotator saved it empty). Each image entry also
carries ``interformer_revision``, how often it was saved (an image never saved is at revision 0). COCO
readers ignore both extra keys.

A save names the revision it started from and is refused (409, ``stale_revision``) when the image was
saved since, so one tab never silently drops the objects another tab saved meanwhile.

Saving an image is one transaction over its PNGs and the JSON:

1. every new PNG and the new JSON are written to hidden temporary files beside their targets
   (``.<name>.<random>.tmp``) and fsync'd; if any write fails (a full disk), the temporaries are
   deleted and nothing on disk has changed;
2. the journal (the renames to do, the PNGs to remove) is written and fsync'd: the save is decided;
3. the temporaries are renamed over their targets (the JSON last), PNGs of objects the image no longer
   has are removed, and the journal is deleted.

A crash in step 3 leaves the journal: the next opening of the folder (or the next save) finishes it,
so the PNGs and the JSON always end up agreeing. Temporaries a crash left before step 2 are deleted
when the folder is opened.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from interformer_edge.core.atomic import atomic_target, default_file_mode

from .errors import STALE_REVISION, ConflictError, RequestError
from .rle import coco_rle, decode_coco_rle, mask_bbox
from .shapes import coco_polygons, coco_polygons_mask

ANNOTATIONS_NAME = "annotations.json"
MASKS_DIR = "masks"
SEGMENTATIONS = ("rle", "polygon")  # how annotations.json writes a mask
JOURNAL_NAME = ".annotations.journal"
CLICKS_KEY = "interformer_clicks"
REVISION_KEY = "interformer_revision"
MAX_LABEL_LENGTH = 100
_TEMPORARY = re.compile(r"^\..+\.(png|json|journal)\.[A-Za-z0-9_]+\.tmp$")  # what mkstemp makes for our targets


@dataclass(frozen=True)
class ObjectMask:
    """One object of an image: its label, its ``(H, W)`` bool mask and the clicks ``(x, y, positive)``."""

    label: str
    mask: np.ndarray
    clicks: tuple[tuple[int, int, bool], ...] = ()


@dataclass(frozen=True)
class SavedImage:
    """What is saved for one image: its revision (0: never saved) and its objects, read together."""

    revision: int
    objects: list[ObjectMask]


@dataclass(frozen=True)
class SaveResult:
    """A committed save: the image's new revision and the PNG files it now has."""

    revision: int
    files: list[Path]


def check_label(label: object) -> str:
    if not isinstance(label, str) or not label.strip():
        raise RequestError("each object needs a label name (a non-empty string)")
    label = label.strip()
    if len(label) > MAX_LABEL_LENGTH or any(ch in label for ch in "\r\n\t\0"):
        raise RequestError(
            f"label {label[:40]!r} is longer than {MAX_LABEL_LENGTH} characters or has control characters"
        )
    return label


def stale_revision_error(name: str, current: int, expected: int) -> ConflictError:
    """The 409 for a save that started from ``expected`` while ``name`` is at ``current``."""
    return ConflictError(
        f"{name} was saved by someone else since this page opened it (revision {current}, the page had "
        f"{expected}): reload it, check the objects and save again",
        code=STALE_REVISION,
    )


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "object"


def _revision(image: dict) -> int:
    value = image.get(REVISION_KEY, 0)
    # a file edited by hand (or saved before revisions existed) counts as revision 0 rather than failing to open
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def mask_png(mask: np.ndarray) -> bytes:
    """``(H, W)`` bool → PNG bytes, 8-bit grayscale 0/255."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it: once this returns, a rename of ``path`` cannot expose a short file."""
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _write_temporary(target: Path, data: bytes) -> Path:
    """A new hidden temporary file beside ``target`` holding ``data`` (fsync'd, umask mode); deleted if it fails."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        _write_file(tmp, data)
        os.chmod(tmp, default_file_mode())  # mkstemp's 0600 would hide the masks from the people they are for
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _rename(source: Path, target: Path) -> None:
    """One commit rename (a seam for the crash tests)."""
    os.replace(source, target)


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable before the journal that would redo them goes (where the OS can)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some filesystems refuse fsync on folders: the renames are still in order
    finally:
        os.close(handle)


class AnnotationStore:
    """The output folder; thread-safe. Reading an existing folder shows what was saved before.

    Opening it finishes a save a crash interrupted (see the module docstring). One server process per
    output folder: the state is kept in memory and written from there.

    Raises:
        RequestError: (at construction) an ``annotations.json`` that is not a COCO file this tool wrote.
        OSError: (at construction) an interrupted save that cannot be finished (e.g. a read-only folder).
    """

    def __init__(self, out: Path, segmentation: str = "rle") -> None:
        if segmentation not in SEGMENTATIONS:
            raise RequestError(f"segmentation must be one of {', '.join(SEGMENTATIONS)}, not {segmentation!r}")
        self.segmentation = segmentation
        self.out = Path(out)
        self.json_path = self.out / ANNOTATIONS_NAME
        self.journal_path = self.out / JOURNAL_NAME
        self._lock = threading.Lock()
        self._roll_forward()
        self._remove_orphans()
        self._doc = self._read()

    def _read(self) -> dict:
        if not self.json_path.is_file():
            return {"info": {"description": "interformer-annotate"}, "images": [], "categories": [], "annotations": []}
        try:
            doc = json.loads(self.json_path.read_text(encoding="utf-8"))
            if not all(isinstance(doc.get(k), list) for k in ("images", "categories", "annotations")):
                raise ValueError("it lacks the images, categories and annotations lists")
            for image in doc["images"]:
                image["id"], image["file_name"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise RequestError(f"{self.json_path} is not a readable COCO annotation file ({err})") from None
        return doc

    # ------------------------------------------------------------------------------------ reading

    def done(self) -> set[str]:
        with self._lock:
            return {image["file_name"] for image in self._doc["images"]}

    def counts(self) -> dict[str, int]:
        """Objects saved per image name."""
        with self._lock:
            by_id = {image["id"]: image["file_name"] for image in self._doc["images"]}
            result = dict.fromkeys(by_id.values(), 0)
            for ann in self._doc["annotations"]:
                name = by_id.get(ann.get("image_id"))
                if name is not None:
                    result[name] += 1
            return result

    def load(self, name: str) -> SavedImage:
        """Image ``name``'s revision and saved objects (in their saved order), from one consistent state."""
        with self._lock:
            image = next((i for i in self._doc["images"] if i["file_name"] == name), None)
            if image is None:
                return SavedImage(0, [])
            revision = _revision(image)
            height, width = image.get("height"), image.get("width")
            labels = {c["id"]: c["name"] for c in self._doc["categories"]}
            anns = [a for a in self._doc["annotations"] if a.get("image_id") == image["id"]]
        result = []  # decoded outside the lock: a save replaces the document, it never edits the one read here
        for ann in anns:
            try:
                segmentation = ann["segmentation"]
                if isinstance(segmentation, list):  # polygons
                    mask = coco_polygons_mask(segmentation, int(height), int(width))
                else:
                    mask = decode_coco_rle(segmentation)
            except (KeyError, ValueError, TypeError):
                continue  # an entry edited by hand into something unreadable: not shown, kept in the file
            clicks = tuple((int(x), int(y), bool(p)) for x, y, p in ann.get(CLICKS_KEY, []))
            result.append(ObjectMask(labels.get(ann.get("category_id"), "object"), mask, clicks))
        return SavedImage(revision, result)

    def objects(self, name: str) -> list[ObjectMask]:
        """The saved objects of image ``name`` (empty if none), in their saved order."""
        return self.load(name).objects

    def revision(self, name: str) -> int:
        """How often image ``name`` was saved (0: never)."""
        with self._lock:
            image = next((i for i in self._doc["images"] if i["file_name"] == name), None)
            return 0 if image is None else _revision(image)

    # ------------------------------------------------------------------------------------ writing

    def save(self, name: str, size: tuple[int, int], objects: list[ObjectMask], revision: int) -> SaveResult:
        """Replace image ``name``'s saved objects with ``objects``, if it is still at ``revision``.

        All or nothing: when this raises, the files on disk are as they were (or, after a failure
        in the middle of the commit renames, the journal finishes the save at the next opening).

        Raises:
            ConflictError: (409, ``stale_revision``) the image was saved since ``revision``; nothing written.
            RequestError: a mask of the wrong size.
            OSError: a write failed (e.g. a full disk); nothing changed.
        """
        height, width = size
        for obj in objects:
            if obj.mask.shape != (height, width):
                raise RequestError(f"a mask of {name} is {obj.mask.shape}, the image is {height}x{width}")
        with self._lock:
            if self.journal_path.exists():  # an earlier commit stopped half-way: finish it before building on it
                self._roll_forward()
                self._doc = self._read()
            image = next((i for i in self._doc["images"] if i["file_name"] == name), None)
            current = 0 if image is None else _revision(image)
            if current != revision:
                raise stale_revision_error(name, current, revision)
            doc = self._updated(name, size, objects, current + 1)
            folder = self.out / MASKS_DIR / name
            targets = [folder / f"{index:02d}_{_slug(obj.label)}.png" for index, obj in enumerate(objects)]
            keep = {t.name for t in targets}
            stale = sorted(p for p in folder.glob("*.png") if p.name not in keep) if folder.is_dir() else []
            created = self._make_folders(folder) if objects else []
            renames: list[tuple[Path, Path]] = []
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                for target, obj in zip(targets, objects, strict=True):
                    renames.append((_write_temporary(target, mask_png(obj.mask)), target))
                payload = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
                renames.append((_write_temporary(self.json_path, payload), self.json_path))
                self._write_journal(renames, stale)
            except BaseException:
                for tmp, _ in renames:
                    tmp.unlink(missing_ok=True)
                for made in reversed(created):
                    with contextlib.suppress(OSError):  # someone put something there meanwhile: it stays
                        made.rmdir()
                raise
            # Decided: from here a failure leaves the journal, and opening the folder (or the next save) finishes it.
            self._roll_forward()
            self._doc = doc
            return SaveResult(current + 1, targets)

    def _updated(self, name: str, size: tuple[int, int], objects: list[ObjectMask], revision: int) -> dict:
        """A copy of the document with image ``name``'s entry and annotations replaced."""
        height, width = size
        doc = json.loads(json.dumps(self._doc))  # a copy: the state changes only once the save is committed
        image = next((i for i in doc["images"] if i["file_name"] == name), None)
        if image is None:
            image = {"id": max((i["id"] for i in doc["images"]), default=0) + 1, "file_name": name}
            doc["images"].append(image)
        image.update(width=width, height=height)
        image[REVISION_KEY] = revision
        doc["annotations"] = [a for a in doc["annotations"] if a.get("image_id") != image["id"]]
        next_id = max((a.get("id", 0) for a in doc["annotations"]), default=0) + 1
        for obj in objects:
            category = next((c for c in doc["categories"] if c["name"] == obj.label), None)
            if category is None:
                category = {"id": max((c["id"] for c in doc["categories"]), default=0) + 1, "name": obj.label}
                doc["categories"].append(category)
            doc["annotations"].append(
                {
                    "id": next_id,
                    "image_id": image["id"],
                    "category_id": category["id"],
                    "segmentation": coco_polygons(obj.mask) if self.segmentation == "polygon" else coco_rle(obj.mask),
                    "area": int(obj.mask.sum()),
                    "bbox": mask_bbox(obj.mask),
                    "iscrowd": 0,
                    CLICKS_KEY: [[x, y, p] for x, y, p in obj.clicks],
                }
            )
            next_id += 1
        doc["images"].sort(key=lambda i: i["file_name"])
        return doc

    def _make_folders(self, folder: Path) -> list[Path]:
        """``mkdir -p folder``; returns the folders it created, outermost first (removed again if the save fails)."""
        missing = []
        at = folder
        while not at.exists():
            missing.append(at)
            at = at.parent
        folder.mkdir(parents=True, exist_ok=True)
        return missing[::-1]

    # ------------------------------------------------------------------------------------ the journal

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def _write_journal(self, renames: list[tuple[Path, Path]], remove: list[Path]) -> None:
        """Write (fsync'd) the commit's renames and removals, paths relative to the folder (it may be moved)."""
        entry = {
            "renames": [[self._relative(tmp), self._relative(target)] for tmp, target in renames],
            "remove": [self._relative(path) for path in remove],
        }
        with atomic_target(self.journal_path) as tmp:
            _write_file(tmp, json.dumps(entry).encode("utf-8"))
        _sync_folder(self.out)

    def _inside(self, relative: object) -> Path:
        if not isinstance(relative, str):
            raise ValueError(f"{relative!r} is not a path")
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(f"{relative} lies outside {self.out}")
        return self.out / relative

    def _roll_forward(self) -> None:
        """Finish the commit the journal describes (nothing if there is none), then delete the journal.

        Idempotent: a rename already done has no temporary left, so running it again after a crash in
        here only does what is left.
        """
        if not self.journal_path.is_file():
            return
        try:
            entry = json.loads(self.journal_path.read_text(encoding="utf-8"))
            renames = [(self._inside(tmp), self._inside(target)) for tmp, target in entry["renames"]]
            remove = [self._inside(path) for path in entry["remove"]]
        except (ValueError, KeyError, TypeError) as err:
            # written all-or-nothing by us, so this is a hand-made file: refuse rather than guess
            raise RequestError(f"{self.journal_path} is not a journal of an interrupted save ({err})") from None
        for tmp, target in renames:
            if tmp.exists():
                _rename(tmp, target)
        for path in remove:
            path.unlink(missing_ok=True)
        for folder in {target.parent for _, target in renames} | {path.parent for path in remove}:
            if folder.is_dir():
                _sync_folder(folder)
        self.journal_path.unlink()
        _sync_folder(self.out)

    def _remove_orphans(self) -> None:
        """Delete temporaries of saves that crashed before their journal was written (so never committed)."""
        candidates = list(self.out.glob(".*.tmp"))
        masks = self.out / MASKS_DIR
        if masks.is_dir():
            candidates += masks.rglob(".*.tmp")
        for path in candidates:
            if _TEMPORARY.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
