"""Tampered feature-store files: a forged model id or size, non-finite maps and the old format are refused
with a message that says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from interformer_edge.core.spec import FEATURE_NAMES
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.errors import FeatureFileError, ModelMismatchError
from interformer_edge.runtime.features import (
    META_KEY,
    ImageFeatures,
    content_digest,
    load_features,
    save_features,
)
from interformer_edge.runtime.session import ClickSession


def rewrite(
    path: Path, out: Path, meta_changes: dict | None = None, maps: dict | None = None, redigest: bool = False
) -> Path:
    """Copy a store file with edited metadata and/or maps (optionally with a recomputed digest, as a forger would)."""
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays[META_KEY].tobytes())
    meta.update(meta_changes or {})
    arrays.update(maps or {})
    if redigest:
        from interformer_edge.runtime.features import FeatureMeta

        parsed = FeatureMeta.from_json(json.dumps(meta), "test")
        meta["content_sha256"] = content_digest(parsed, {n: arrays[n] for n in FEATURE_NAMES})
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    return out


def test_forged_model_id_or_size_is_refused(light_export: Path, stored_features: Path, tmp_path: Path) -> None:
    real = load_features(stored_features)
    forged_id = rewrite(stored_features, tmp_path / "id.npz", {"model_id": "0123456789abcdef"})
    with pytest.raises(FeatureFileError, match="does not match its digest"):
        load_features(forged_id)
    forged_size = rewrite(stored_features, tmp_path / "size.npz", {"original_size": [7000, 9000]})
    with pytest.raises(FeatureFileError, match="recorded sizes contradict each other"):
        load_features(forged_size)
    # A size that fits the others (a 2x larger photo, encoded at half size) is caught by the digest.
    consistent = rewrite(stored_features, tmp_path / "size1.npz", {"original_size": [140, 180], "scale": 0.5})
    with pytest.raises(FeatureFileError, match="does not match its digest"):
        load_features(consistent)
    # A forger who recomputes the digest still cannot make the sizes contradict the maps...
    resized = rewrite(stored_features, tmp_path / "size2.npz", {"original_size": [7000, 9000]}, redigest=True)
    with pytest.raises(FeatureFileError, match="recorded sizes contradict each other"):
        ClickSession(Decoder(light_export, threads=1), resized)
    # ...nor pass features for another model: the decoder checks the id against its export.
    other = rewrite(stored_features, tmp_path / "id2.npz", {"model_id": "0123456789abcdef"}, redigest=True)
    with pytest.raises(ModelMismatchError, match="encode the image again"):
        ClickSession(Decoder(light_export, threads=1), other)
    assert load_features(stored_features).meta == real.meta


def test_non_finite_features_are_refused_at_load_and_never_written(stored_features: Path, tmp_path: Path) -> None:
    features = load_features(stored_features)
    poisoned = {name: np.array(array) for name, array in features.maps.items()}
    poisoned["feat2"][0, 0, 0, 0] = np.nan
    path = rewrite(stored_features, tmp_path / "nan.npz", maps=poisoned, redigest=True)
    with pytest.raises(FeatureFileError, match="feat2 holds NaN or infinite values"):
        load_features(path)
    with pytest.raises(FeatureFileError, match="NaN"):
        save_features(ImageFeatures(poisoned, features.meta), tmp_path / "out" / "nan.npz")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_feature_file_of_format_1_asks_for_re_encoding(stored_features: Path, tmp_path: Path) -> None:
    old = rewrite(stored_features, tmp_path / "v1.npz", {"version": 1, "content_sha256": None})
    with pytest.raises(FeatureFileError, match=r"older version \(feature format 1.*encode the image again"):
        load_features(old)
