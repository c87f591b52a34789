"""Image features on disk: one ``.npz`` file per image, float16 by default, written atomically.

File format (``FORMAT_NAME`` version ``FORMAT_VERSION``), an uncompressed numpy ``.npz`` (a zip
archive, so every member carries a CRC-32 that numpy checks on reading) with:

* ``feat0`` … ``feat3``: ``(1, C_i, Hp / s_i, Wp / s_i)`` for strides ``s_i`` = 4, 8, 16, 32, in the
  stored dtype (float16 unless asked otherwise; a map that would overflow float16 is kept float32);
* ``meta``: the UTF-8 bytes of a JSON object (:class:`FeatureMeta`) as a uint8 array, so no pickle
  is ever needed to read a file.

At 512x512 and the official channel widths (32, 64, 128, 256) that is 1.9 MB in float16. The
``model_id`` inside ties the features to one model: loading them for another raises
:class:`ModelMismatchError`; a truncated or corrupt file raises :class:`FeatureFileError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FeatureFileError, ModelMismatchError
from .manifest import Manifest
from .spec import FEATURE_NAMES, FEATURE_STRIDES

FORMAT_NAME = "interformer-edge-features"
FORMAT_VERSION = 1
FEATURE_SUFFIX = ".npz"
META_KEY = "meta"
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")


def model_id(manifest: Manifest) -> str:
    """A short id (16 hex digits) of what determines the features of an export.

    It hashes the source checkpoint's sha256, the sha256 of every encoder file of the export (all
    formats) and the preprocessing. The decoder files are left out on purpose: the FP32 and INT8
    decoders of one export consume the same features. A re-export changes the id (conservative: the
    features are then recomputed rather than trusted).
    """
    by_name = {f.name: f.sha256 for f in manifest.files}
    encoder_files = sorted(by_name.get(name, name) for name in manifest.graphs["encoder"].files.values())
    payload = {
        "checkpoint": manifest.source_checkpoint.sha256,
        "encoder": encoder_files,
        "preprocessing": asdict(manifest.preprocessing),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureMeta:
    """What a feature file records besides the maps.

    Sizes are ``(height, width)``: ``original_size`` of the image as read (after EXIF rotation),
    ``encoded_size`` after the optional ``max_side`` downscale (what the encoder saw, unpadded),
    ``padded_size`` of the encoder's input canvas. ``scale`` is the requested downscale factor
    (1.0: none); the exact per-axis factors are ``encoded_size / original_size``.
    """

    model_id: str
    image_name: str
    original_size: tuple[int, int]
    encoded_size: tuple[int, int]
    padded_size: tuple[int, int]
    scale: float
    dtype: str
    max_side: int | None = None  # the downscale limit asked for (None: full size); resume compares it
    encoder: str = ""  # backend and file that produced the features, for the record
    image_sha256: str | None = None  # of the image file, when encoded from a file (resume checks it)
    created: str = ""
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> FeatureMeta:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise FeatureFileError(f"{where}: the metadata is not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise FeatureFileError(f"{where} is not an interformer-edge feature file")
        if data.get("version") != FORMAT_VERSION:
            raise FeatureFileError(
                f"{where} has feature format version {data.get('version')}; this runtime reads {FORMAT_VERSION}"
            )
        known = {f.name for f in fields(cls)}
        try:
            values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
            for key in ("original_size", "encoded_size", "padded_size"):
                values[key] = _size(values[key])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureFileError(f"{where}: incomplete or malformed metadata ({err})") from None


def _size(value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f"bad size {value!r}")
    return value[0], value[1]


@dataclass
class ImageFeatures:
    """The encoder's output for one image: ``maps`` (``feat0..feat3`` as in the module docstring) and ``meta``."""

    maps: dict[str, np.ndarray]
    meta: FeatureMeta

    def decoder_inputs(self) -> dict[str, np.ndarray]:
        """The four maps as contiguous float32, ready to feed the decoder (converted once, not per click)."""
        return {name: np.ascontiguousarray(self.maps[name], dtype=np.float32) for name in FEATURE_NAMES}

    def check_model(self, expected_id: str) -> None:
        """Raise :class:`ModelMismatchError` unless the features come from the model ``expected_id``."""
        if self.meta.model_id != expected_id:
            raise ModelMismatchError(
                f"features of {self.meta.image_name!r} come from model {self.meta.model_id}, not {expected_id}: "
                "encode the image again with this model"
            )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _storage(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        half = array.astype(np.float16)
        if np.isfinite(half).all() or not np.isfinite(array).all():
            return half
        # Values beyond float16's range (65504) would turn into inf: keep this map exact instead.
    return array.astype(np.float32, copy=False)


def save_features(features: ImageFeatures, path: str | Path, dtype: str | None = None) -> Path:
    """Write ``features`` to ``path`` atomically (a temporary file in the same folder, then rename).

    Args:
        dtype: storage dtype, ``"float16"`` or ``"float32"``; default: ``features.meta.dtype``.

    Returns:
        The path written.
    """
    path = Path(path)
    dtype = dtype or features.meta.dtype
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown feature dtype {dtype!r}; use {', '.join(STORAGE_DTYPES)}")
    meta = features.meta if features.meta.dtype == dtype else _replace_meta(features.meta, dtype=dtype)
    arrays = {name: _storage(np.asarray(features.maps[name]), dtype) for name in FEATURE_NAMES}
    arrays[META_KEY] = np.frombuffer(meta.to_json().encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _replace_meta(meta: FeatureMeta, **changes: Any) -> FeatureMeta:
    return FeatureMeta(**{**asdict(meta), **changes})


def _open_npz(path: Path) -> Any:
    if not path.is_file():
        raise FeatureFileError(f"no feature file at {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{path} is not a readable feature file (truncated or corrupt?): {err}") from None


def _read_meta(npz: Any, path: Path) -> FeatureMeta:
    if META_KEY not in npz.files:
        raise FeatureFileError(f"{path} has no metadata: not an interformer-edge feature file")
    try:
        raw = npz[META_KEY]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{path}: corrupt metadata ({err})") from None
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise FeatureFileError(f"{path}: corrupt metadata (not UTF-8)") from None
    return FeatureMeta.from_json(text, str(path))


def read_meta(path: str | Path) -> FeatureMeta:
    """Only the metadata of a feature file (the maps are not read): cheap, for resuming an encode run."""
    path = Path(path)
    with _open_npz(path) as npz:
        return _read_meta(npz, path)


def load_features(path: str | Path, expected_model_id: str | None = None) -> ImageFeatures:
    """Read a feature file completely, checking its integrity and, if given, its model.

    Returns the maps in their stored dtype (see :meth:`ImageFeatures.decoder_inputs`).

    Raises:
        FeatureFileError: missing, truncated, corrupt (CRC), of another format/version, or maps whose
            shapes do not match the recorded padded size.
        ModelMismatchError: ``expected_model_id`` differs from the file's model id.
    """
    path = Path(path)
    with _open_npz(path) as npz:
        meta = _read_meta(npz, path)
        features = ImageFeatures({}, meta)
        if expected_model_id is not None:
            features.check_model(expected_model_id)
        for name in FEATURE_NAMES:
            if name not in npz.files:
                raise FeatureFileError(f"{path} lacks {name}")
            try:
                features.maps[name] = npz[name]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise FeatureFileError(f"{path}: {name} is corrupt ({err})") from None
    check_shapes(features, str(path))
    return features


def check_shapes(features: ImageFeatures, where: str) -> None:
    """Each map must be ``(1, C, Hp / s, Wp / s)`` for the recorded padded size, float16 or float32."""
    pad_h, pad_w = features.meta.padded_size
    for name, stride in zip(FEATURE_NAMES, FEATURE_STRIDES, strict=True):
        array = features.maps[name]
        if array.ndim != 4 or array.shape[0] != 1 or array.shape[2:] != (pad_h // stride, pad_w // stride):
            raise FeatureFileError(
                f"{where}: {name} has shape {array.shape}, expected (1, C, {pad_h // stride}, {pad_w // stride})"
            )
        if array.dtype not in (np.float16, np.float32):
            raise FeatureFileError(f"{where}: {name} has dtype {array.dtype}, expected float16 or float32")

