"""Image features on disk: one ``.npz`` file per image, float16 by default, written atomically.

File format (``FORMAT_NAME`` version ``FORMAT_VERSION``), an uncompressed numpy ``.npz`` (a zip
archive, so every member carries a CRC-32 that numpy checks on reading) with:

* ``feat0`` … ``feat3``: ``(1, C_i, Hp / s_i, Wp / s_i)`` for strides ``s_i`` = 4, 8, 16, 32, in the
  stored dtype (float16 unless asked otherwise; a map that would overflow float16 is kept float32);
* ``meta``: the UTF-8 bytes of a JSON object (:class:`FeatureMeta`) as a uint8 array, so no pickle
  is ever needed to read a file. Its ``content_sha256`` is a sha256 over the rest of the metadata
  and the four maps (name, dtype, shape, bytes): a file whose metadata or maps were edited after
  writing is refused at load. (It detects damage and careless edits, not a forger who recomputes
  it: it is not a signature.)

Loading also checks the metadata against the maps (shapes, the sizes against each other and the
recorded downscale) and refuses non-finite values. Version 1 files (no digest) are refused with a
"re-encode" message; ``interformer-encode encode`` re-encodes them on its next run.

At 512x512 and the official channel widths (32, 64, 128, 256) that is 1.9 MB in float16. The
``model_id`` inside ties the features to one model: loading them for another raises
:class:`ModelMismatchError`; a truncated or corrupt file raises :class:`FeatureFileError`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.atomic import atomic_target
from interformer_edge.core.manifest import Manifest
from interformer_edge.core.spec import FEATURE_NAMES, FEATURE_STRIDES, SIZE_DIVISOR

from .errors import FeatureFileError, ModelMismatchError

FORMAT_NAME = "interformer-edge-features"
FORMAT_VERSION = 2  # 2: content_sha256 over metadata and maps
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
    content_sha256: str = ""  # set by save_features: sha256 of the other fields and the maps (see module doc)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> FeatureMeta:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise FeatureFileError(f"{where}: the metadata is not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise FeatureFileError(f"{where} is not an interformer-edge feature file")
        version = data.get("version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
                raise FeatureFileError(
                    f"{where} was written by an older version (feature format {version}, without an integrity "
                    "digest): encode the image again (interformer-encode encode does it on its next run)"
                )
            raise FeatureFileError(
                f"{where} has feature format version {version!r}; this runtime reads {FORMAT_VERSION}"
            )
        known = {f.name for f in fields(cls)}
        try:
            values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
            for key in ("original_size", "encoded_size", "padded_size"):
                values[key] = _size(values[key])
            _check_types(values)
            return cls(**values)
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureFileError(f"{where}: incomplete or malformed metadata ({err})") from None


# Largest side a size in the metadata may claim (a sanity bound: far beyond any encodable image).
_MAX_RECORDED_SIDE = 1 << 20
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model_id": (str,),
    "image_name": (str,),
    "dtype": (str,),
    "encoder": (str,),
    "created": (str,),
    "content_sha256": (str,),
    "scale": (float, int),
    "max_side": (int, type(None)),
    "image_sha256": (str, type(None)),
}


def _check_types(values: dict[str, Any]) -> None:
    for key, kinds in _FIELD_TYPES.items():
        if key in values and (not isinstance(values[key], kinds) or isinstance(values[key], bool)):
            raise ValueError(f"{key} has type {type(values[key]).__name__}")
    scale = values.get("scale")
    if scale is not None and not (isinstance(scale, (int, float)) and 0.0 < scale <= 1.0):
        raise ValueError(f"scale {scale!r} is not in (0, 1]")
    max_side = values.get("max_side")
    if max_side is not None and not 0 < max_side <= _MAX_RECORDED_SIDE:
        raise ValueError(f"max_side {max_side!r} is not a positive side")
    if values.get("dtype") not in STORAGE_DTYPES:
        raise ValueError(f"dtype {values.get('dtype')!r} is not one of {', '.join(STORAGE_DTYPES)}")


def _size(value: Any) -> tuple[int, int]:
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_RECORDED_SIDE for v in value)
    ):
        raise ValueError(f"bad size {value!r}")
    return value[0], value[1]


@dataclass
class ImageFeatures:
    """The encoder's output for one image: ``maps`` (``feat0..feat3`` as in the module docstring) and ``meta``."""

    maps: dict[str, np.ndarray]
    meta: FeatureMeta

    def float32_maps(self) -> dict[str, np.ndarray]:
        """The four maps ``feat0..feat3`` as contiguous float32, the context graph's inputs (converted once
        per image, not per click)."""
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
    """Write ``features`` to ``path`` atomically: the one function that writes a feature-store file.

    Every encoding engine (the local worker pool, the Ray engine) stores through this function; its
    name and signature are stable. The file appears complete or not at all (a temporary file in the
    same folder, then a rename; the umask's usual mode, see :mod:`.atomic`); its metadata gets the
    ``content_sha256`` digest that :func:`load_features` verifies.

    Args:
        features: maps ``feat0..feat3`` ``(1, C_i, Hp / s_i, Wp / s_i)`` and their metadata.
        path: the target file (its folder is created if needed).
        dtype: storage dtype, ``"float16"`` or ``"float32"``; default: ``features.meta.dtype``.

    Returns:
        The path written.

    Raises:
        FeatureFileError: the maps do not fit the metadata, or hold NaN/inf (nothing is written).
    """
    path = Path(path)
    dtype = dtype or features.meta.dtype
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown feature dtype {dtype!r}; use {', '.join(STORAGE_DTYPES)}")
    where = f"features of {features.meta.image_name or 'the image'}"
    check_shapes(features, where)
    check_finite(features, where)
    arrays = {name: _storage(np.asarray(features.maps[name]), dtype) for name in FEATURE_NAMES}
    meta = _replace_meta(features.meta, dtype=dtype, content_sha256="")
    meta = _replace_meta(meta, content_sha256=content_digest(meta, arrays))
    arrays[META_KEY] = np.frombuffer(meta.to_json().encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def content_digest(meta: FeatureMeta, maps: dict[str, np.ndarray]) -> str:
    """sha256 (hex) of the metadata without its digest and of each map's name, dtype, shape and bytes."""
    digest = hashlib.sha256(_replace_meta(meta, content_sha256="").to_json().encode("utf-8"))
    for name in FEATURE_NAMES:
        array = np.ascontiguousarray(maps[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _replace_meta(meta: FeatureMeta, **changes: Any) -> FeatureMeta:
    return FeatureMeta(**{**asdict(meta), **changes})


_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, MemoryError)


def _open_npz(path: Path) -> Any:
    if not path.is_file():
        raise FeatureFileError(f"no feature file at {path}")
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise FeatureFileError(f"{path} is not a readable feature file (truncated or corrupt?): {err}") from None


def _member_header(npz: Any, name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype an ``.npz`` member declares, read before its data (a forged header could ask for terabytes)."""
    try:
        with npz.zip.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except _READ_ERRORS as err:
        raise FeatureFileError(f"{path}: {name} is corrupt ({err})") from None
    return tuple(shape), np.dtype(dtype)


def _read_member(npz: Any, name: str, path: Path) -> np.ndarray:
    try:
        return npz[name]
    except _READ_ERRORS as err:
        raise FeatureFileError(f"{path}: {name} is corrupt ({err})") from None


def _read_meta(npz: Any, path: Path) -> FeatureMeta:
    if META_KEY not in npz.files:
        raise FeatureFileError(f"{path} has no metadata: not an interformer-edge feature file")
    shape, dtype = _member_header(npz, META_KEY, path)
    if len(shape) != 1 or dtype != np.uint8 or shape[0] > _MAX_META_BYTES:
        raise FeatureFileError(f"{path}: corrupt metadata (a {dtype} array of shape {shape})")
    raw = _read_member(npz, META_KEY, path)
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise FeatureFileError(f"{path}: corrupt metadata (not UTF-8)") from None
    return FeatureMeta.from_json(text, str(path))


_MAX_META_BYTES = 1 << 20  # real metadata is well under 1 KB


def read_meta(path: str | Path) -> FeatureMeta:
    """Only the metadata of a feature file (the maps are not read, nor the digest checked): cheap, for
    resuming an encode run. Raises :class:`FeatureFileError` like :func:`load_features`."""
    path = Path(path)
    with _open_npz(path) as npz:
        return _read_meta(npz, path)


def load_features(path: str | Path, expected_model_id: str | None = None) -> ImageFeatures:
    """Read a feature file completely, checking its integrity and, if given, its model.

    Returns the maps in their stored dtype (see :meth:`ImageFeatures.float32_maps`).

    Raises:
        FeatureFileError: missing, truncated, corrupt (CRC), of another format/version, metadata
            that contradicts itself or the maps, a digest that does not match (edited after writing),
            or NaN/inf in the maps.
        ModelMismatchError: ``expected_model_id`` differs from the file's model id.
    """
    path = Path(path)
    with _open_npz(path) as npz:
        meta = _read_meta(npz, path)
        features = ImageFeatures({}, meta)
        check_sizes(meta, str(path))
        if expected_model_id is not None:
            features.check_model(expected_model_id)
        pad_h, pad_w = meta.padded_size
        for name, stride in zip(FEATURE_NAMES, FEATURE_STRIDES, strict=True):
            if name not in npz.files:
                raise FeatureFileError(f"{path} lacks {name}")
            shape, dtype = _member_header(npz, name, path)
            _check_map(name, shape, dtype, (pad_h // stride, pad_w // stride), str(path))
            features.maps[name] = _read_member(npz, name, path)
    check_shapes(features, str(path))
    if meta.content_sha256 != content_digest(meta, features.maps):
        raise FeatureFileError(
            f"{path}: the content does not match its digest (metadata or maps edited or damaged after writing): "
            "encode the image again"
        )
    check_finite(features, str(path))
    return features


def _check_map(name: str, shape: tuple[int, ...], dtype: np.dtype, grid: tuple[int, int], where: str) -> None:
    if len(shape) != 4 or shape[0] != 1 or tuple(shape[2:]) != grid:
        raise FeatureFileError(f"{where}: {name} has shape {shape}, expected (1, C, {grid[0]}, {grid[1]})")
    if dtype not in (np.float16, np.float32):
        raise FeatureFileError(f"{where}: {name} has dtype {dtype}, expected float16 or float32")


def check_shapes(features: ImageFeatures, where: str) -> None:
    """Each map must be ``(1, C, Hp / s, Wp / s)`` for the recorded padded size, float16 or float32."""
    pad_h, pad_w = features.meta.padded_size
    for name, stride in zip(FEATURE_NAMES, FEATURE_STRIDES, strict=True):
        if name not in features.maps:
            raise FeatureFileError(f"{where} lacks {name}")
        array = np.asarray(features.maps[name])
        _check_map(name, array.shape, array.dtype, (pad_h // stride, pad_w // stride), where)


def check_finite(features: ImageFeatures, where: str) -> None:
    """Refuse NaN or inf in the maps: the decoder would answer every click with an empty mask."""
    for name in FEATURE_NAMES:
        if not np.isfinite(features.maps[name]).all():
            raise FeatureFileError(f"{where}: {name} holds NaN or infinite values: encode the image again")


def check_sizes(meta: FeatureMeta, where: str) -> None:
    """The recorded sizes must agree with each other: what the encoder's plan gives for ``original_size``
    and ``scale`` is ``encoded_size``, which fits the padded canvas (a multiple of the size divisor)."""
    (orig_h, orig_w), (enc_h, enc_w), (pad_h, pad_w) = meta.original_size, meta.encoded_size, meta.padded_size
    expected = (min(pad_h, max(1, round(orig_h * meta.scale))), min(pad_w, max(1, round(orig_w * meta.scale))))
    if pad_h % SIZE_DIVISOR or pad_w % SIZE_DIVISOR:
        raise FeatureFileError(f"{where}: padded size {pad_h}x{pad_w} is not a multiple of {SIZE_DIVISOR}")
    if (enc_h, enc_w) != expected or enc_h > pad_h or enc_w > pad_w:
        raise FeatureFileError(
            f"{where}: the recorded sizes contradict each other (original {orig_h}x{orig_w} at scale {meta.scale:g} "
            f"gives {expected[0]}x{expected[1]}, but the encoded size is {enc_h}x{enc_w} on a {pad_h}x{pad_w} canvas)"
        )
