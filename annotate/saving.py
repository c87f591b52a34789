"""Saved annotations: a PNG per object and one COCO JSON (RLE) for the folder, written atomically.

Layout of the output folder::

    annotations.json                    COCO: images, categories (the label names), annotations
    masks/<image path>/<k>_<label>.png  one 0/255 grayscale mask per object, at the photo's size

Each annotation's ``segmentation`` is a COCO RLE ``{"size": [H, W], "counts": "<compressed>"}``
(``iscrowd`` 0), with ``area`` and ``bbox`` from the mask; the clicks that made it are kept under
``interformer_clicks`` as ``[x, y, positive]``. An image listed in ``images`` counts as done (also with
no object: the annotator saved it empty). Saving an image writes its PNGs first, then the JSON (each
through a temporary file and a rename), then removes PNGs of objects it no longer has; a crash leaves
the previous JSON intact.
"""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from interformer_edge.core.atomic import write_atomic

from .errors import RequestError
from .rle import coco_rle, decode_coco_rle, mask_bbox

ANNOTATIONS_NAME = "annotations.json"
MASKS_DIR = "masks"
CLICKS_KEY = "interformer_clicks"
MAX_LABEL_LENGTH = 100


@dataclass(frozen=True)
class ObjectMask:
    """One object of an image: its label, its ``(H, W)`` bool mask and the clicks ``(x, y, positive)``."""

    label: str
    mask: np.ndarray
    clicks: tuple[tuple[int, int, bool], ...] = ()


def check_label(label: object) -> str:
    if not isinstance(label, str) or not label.strip():
        raise RequestError("each object needs a label name (a non-empty string)")
    label = label.strip()
    if len(label) > MAX_LABEL_LENGTH or any(ch in label for ch in "\r\n\t\0"):
        raise RequestError(
            f"label {label[:40]!r} is longer than {MAX_LABEL_LENGTH} characters or has control characters"
        )
    return label


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "object"


def mask_png(mask: np.ndarray) -> bytes:
    """``(H, W)`` bool → PNG bytes, 8-bit grayscale 0/255."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class AnnotationStore:
    """The output folder; thread-safe. Reading an existing folder shows what was saved before.

    Raises:
        RequestError: (at construction) an ``annotations.json`` that is not a COCO file this tool wrote.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.json_path = self.out / ANNOTATIONS_NAME
        self._lock = threading.Lock()
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

    def objects(self, name: str) -> list[ObjectMask]:
        """The saved objects of image ``name`` (empty if none), in their saved order."""
        with self._lock:
            image = next((i for i in self._doc["images"] if i["file_name"] == name), None)
            if image is None:
                return []
            labels = {c["id"]: c["name"] for c in self._doc["categories"]}
            anns = [a for a in self._doc["annotations"] if a.get("image_id") == image["id"]]
        result = []
        for ann in anns:
            try:
                mask = decode_coco_rle(ann["segmentation"])
            except (KeyError, ValueError, TypeError):
                continue  # an entry edited by hand into something unreadable: not shown, kept in the file
            clicks = tuple((int(x), int(y), bool(p)) for x, y, p in ann.get(CLICKS_KEY, []))
            result.append(ObjectMask(labels.get(ann.get("category_id"), "object"), mask, clicks))
        return result

    # ------------------------------------------------------------------------------------ writing

    def save(self, name: str, size: tuple[int, int], objects: list[ObjectMask]) -> list[Path]:
        """Replace image ``name``'s saved objects with ``objects``; returns the PNG files written."""
        height, width = size
        for obj in objects:
            if obj.mask.shape != (height, width):
                raise RequestError(f"a mask of {name} is {obj.mask.shape}, the image is {height}x{width}")
        with self._lock:
            folder = self.out / MASKS_DIR / name
            folder.mkdir(parents=True, exist_ok=True)
            written = []
            for index, obj in enumerate(objects):
                written.append(write_atomic(folder / f"{index:02d}_{_slug(obj.label)}.png", mask_png(obj.mask)))
            doc = json.loads(json.dumps(self._doc))  # a copy: the state changes only once the file is written
            image = next((i for i in doc["images"] if i["file_name"] == name), None)
            if image is None:
                image = {"id": max((i["id"] for i in doc["images"]), default=0) + 1, "file_name": name}
                doc["images"].append(image)
            image.update(width=width, height=height)
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
                        "segmentation": coco_rle(obj.mask),
                        "area": int(obj.mask.sum()),
                        "bbox": mask_bbox(obj.mask),
                        "iscrowd": 0,
                        CLICKS_KEY: [[x, y, p] for x, y, p in obj.clicks],
                    }
                )
                next_id += 1
            doc["images"].sort(key=lambda i: i["file_name"])
            write_atomic(self.json_path, json.dumps(doc, indent=1) + "\n")
            self._doc = doc
            keep = {p.name for p in written}
            if folder.is_dir():
                for stale in folder.glob("*.png"):
                    if stale.name not in keep:
                        stale.unlink(missing_ok=True)
            return written
