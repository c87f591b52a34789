"""The image side: read an image, prepare it as the manifest says, run the encoder once.

>>> encoder = Encoder("export/", threads=2)
>>> features = encoder.encode("photo.jpg", max_side=1024)    # ImageFeatures
>>> save_features(features, "photo.jpg.npz")                   # float16, atomic

Preparation (all numbers from the manifest's ``preprocessing``, none from constants):

1. the image is read as ``(H, W, 3)`` uint8 RGB (EXIF orientation applied, 16-bit scaled,
   grayscale / palette expanded, alpha dropped; see :mod:`.image_io`);
2. if its longer side exceeds ``max_side`` (None: :data:`~.spec.DEFAULT_MAX_SIDE`, 1024; 0: no limit
   but the model's ``max_image_side``) it is shrunk with Pillow's antialiased bilinear
   filter to ``encoded_size`` (aspect ratio kept, sides rounded);
3. mapped to the model's color order and input range, normalized with its mean / std, and padded
   bottom/right with ``pad_value`` to a multiple of ``size_divisor`` (or to ``static_size`` for a
   static-size export).

The features remember ``original_size`` and ``encoded_size``; the click session works at the
encoded size and brings masks back to the original size (see :mod:`.session`).

Memory grows with the fourth power of the encoded side (global attention, see :mod:`.memory`):
before running, the encoder estimates its need for the canvas and refuses with
:class:`~.errors.MemoryBudgetError`, naming ``max_side``, when the machine does not have it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from interformer_edge.core.image_io import as_rgb_array, read_rgb
from interformer_edge.core.manifest import Manifest
from interformer_edge.core.preprocess import fit_size, normalize_image, padded_shape, resize_rgb
from interformer_edge.core.spec import DEFAULT_MAX_SIDE, FEATURE_NAMES, IMAGE_INPUT

from .errors import ModelMismatchError
from .export import DEFAULT_COMPUTE, Export, RuntimeSettings, compute_from, open_export
from .features import FeatureMeta, ImageFeatures, check_shapes, now_iso
from .memory import check_encoder_memory

ImageInput = np.ndarray | Image.Image | str | Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan_canvas(
    manifest: Manifest, height: int, width: int, max_side: int | None = None
) -> tuple[tuple[int, int], tuple[int, int], float]:
    """``(encoded_size, padded_size, scale)`` of an ``height x width`` image for this export.

    The limit is the smaller of ``max_side`` (None or 0: none) and the model's ``max_image_side``
    (rounded down to the size divisor so the padded canvas fits too); a static-size export must hold
    the whole image on its canvas.
    """
    pre = manifest.preprocessing
    limit = pre.max_image_side // pre.size_divisor * pre.size_divisor
    side = limit if not max_side else min(max_side, limit)
    static = manifest.static_size
    if static is not None:  # shrink to fit inside the fixed canvas, then pad to it
        factor = min(1.0, static[0] / height, static[1] / width, side / max(height, width))
        encoded = (min(static[0], max(1, round(height * factor))), min(static[1], max(1, round(width * factor))))
        return encoded, static, factor
    enc_h, enc_w, scale = fit_size(height, width, side)
    return (enc_h, enc_w), padded_shape(enc_h, enc_w, pre.size_divisor), scale


class Encoder:
    """The encoder graph of one export folder, loaded once and reused for many images.

    Args:
        export_dir: folder with ``manifest.json`` and the encoder file(s), or an opened :class:`~.export.Export`.
        backend: ``"auto"`` (ONNX Runtime if installed and exported, else OpenVINO), ``"onnxruntime"``
            or ``"openvino"``.
        threads: CPU threads for the encoder (None: the backend default, all cores).
        compute: OpenVINO's compute type (``"f32"`` default, ``"device"``: the CPU's default), see
            :mod:`.export`; ``precision=`` is its old, deprecated name.
        max_side: default longest side for :meth:`encode` (None: ``DEFAULT_MAX_SIDE``, 1024; 0: only the
            model's own limit).
        manifest: an already loaded manifest (skips reading and hashing the folder again).
        verify: check every artifact's sha256 when loading the manifest (reads all files once).
    """

    def __init__(
        self,
        export_dir: str | Path | Export,
        backend: str = "auto",
        threads: int | None = None,
        compute: str = DEFAULT_COMPUTE,
        max_side: int | None = None,
        manifest: Manifest | None = None,
        verify: bool = True,
        *,
        precision: str | None = None,
    ) -> None:
        self.export = open_export(export_dir, verify, manifest)
        self.manifest = self.export.manifest
        compute = compute_from(compute, precision, "Encoder")
        pre = self.manifest.preprocessing
        if pre.color_order not in ("RGB", "BGR") or pre.layout != "NCHW":
            raise ModelMismatchError(
                f"unsupported preprocessing {pre.color_order}/{pre.layout}: this runtime feeds RGB or BGR NCHW"
            )
        self.graph = self.export.graph("encoder", RuntimeSettings(backend, threads, compute))
        self.model_id = self.export.model_id
        self.max_side = DEFAULT_MAX_SIDE if max_side is None else max_side

    @property
    def backend(self) -> str:
        return self.graph.backend

    def plan(
        self, height: int, width: int, max_side: int | None = None
    ) -> tuple[tuple[int, int], tuple[int, int], float]:
        """``(encoded_size, padded_size, scale)`` for an ``height x width`` image (see :func:`plan_canvas`)."""
        return plan_canvas(self.manifest, height, width, max_side)

    def prepare(self, rgb: np.ndarray, encoded_size: tuple[int, int], padded_size: tuple[int, int]) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB → the encoder input ``(1, 3, Hp, Wp)`` float32 (steps 2–3 of the module doc)."""
        pre = self.manifest.preprocessing
        image = resize_rgb(rgb, encoded_size)
        if pre.color_order == "BGR":
            image = image[..., ::-1]
        low, high = pre.input_range
        if (low, high) != (0.0, 255.0):
            image = image.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        return normalize_image(image, pre.mean, pre.std, pre.size_divisor, pre.pad_value, padded_size)

    def encode(
        self,
        image: ImageInput,
        name: str | None = None,
        max_side: int | None = None,
        image_sha256: str | None = None,
    ) -> ImageFeatures:
        """Encode one image.

        Args:
            image: a file path, a Pillow image or an array (see :func:`.image_io.as_rgb_array`).
            name: recorded as the image name (default: the file name, or ``""`` for in-memory images).
            max_side: longest side to encode at (default: the encoder's ``max_side``; 0: the model's limit).
            image_sha256: recorded for resumable stores (computed here for file paths).

        Returns:
            :class:`ImageFeatures` with float32 maps and metadata (``meta.dtype`` says how
            :func:`.features.save_features` stores them by default: float16).

        Raises:
            ImageReadError: unreadable, empty or unsupported image.
            MemoryBudgetError: the encoder would need more memory than is available (before any work).
            BackendError: the encoder failed to run.
        """
        if isinstance(image, (str, Path)):
            path = Path(image)
            rgb = read_rgb(path)
            name = path.name if name is None else name
            if image_sha256 is None:
                image_sha256 = sha256_bytes(path.read_bytes())
        else:
            rgb = as_rgb_array(image)
        height, width = rgb.shape[:2]
        max_side = (self.max_side if max_side is None else max_side) or None
        encoded_size, padded_size, scale = self.plan(height, width, max_side)
        check_encoder_memory(
            self.manifest.architecture, (height, width), padded_size, self.manifest.preprocessing.size_divisor
        )
        outputs = self.graph.run({IMAGE_INPUT: self.prepare(rgb, encoded_size, padded_size)})
        meta = FeatureMeta(
            model_id=self.model_id,
            image_name=name or "",
            original_size=(height, width),
            encoded_size=encoded_size,
            padded_size=padded_size,
            scale=scale,
            dtype="float16",
            max_side=max_side,
            encoder=f"{self.graph.backend}:{self.graph.path.name}",
            image_sha256=image_sha256,
            created=now_iso(),
        )
        features = ImageFeatures({name_: outputs[name_] for name_ in FEATURE_NAMES}, meta)
        check_shapes(features, f"encoder output for {name or 'image'}")
        return features
