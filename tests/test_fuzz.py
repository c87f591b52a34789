"""A seeded fuzz pass over the three readers a user can feed by hand: the export manifest, feature-store
files and the click API. Every case must end in success or in one of the project's own errors with a
one-line message — never another exception (a traceback for the user) — and nothing may be written.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interformer_edge.core.manifest import ManifestError, load_manifest, manifest_from_dict
from interformer_edge.core.spec import FEATURE_NAMES, MANIFEST_NAME
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import ClickError, FeatureFileError, ModelMismatchError
from interformer_edge.runtime.features import META_KEY, FeatureMeta, content_digest, load_features, save_features
from interformer_edge.runtime.session import ClickSession

SEED = 16
ODD_VALUES: list[Any] = [
    None,
    "x",
    "",
    -1,
    0,
    10**30,
    -(10**30),
    1e308,
    float("nan"),
    True,
    [],
    {},
    [1, 2, 3],
    [0, 5],
    "\x00",
    "9" * 50,
]


def outcome(action: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> str:
    """``"ok"`` or the name of an allowed error (whose message must be one non-empty line); anything else fails."""
    try:
        action()
    except allowed as err:
        message = str(err)
        assert message and "\n" not in message, f"{type(err).__name__} message is not one line: {message!r}"
        return type(err).__name__
    return "ok"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ manifest


def leaf_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):  # the first entries of lists are enough
            yield from leaf_paths(item, (*prefix, index))


def mutated(data: Any, path: tuple, value: Any) -> Any:
    copy_ = copy.deepcopy(data)
    if not path:
        return value
    target = copy_
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy_


def test_manifest_reads_back_what_the_exporter_wrote(light_export: Path) -> None:
    data = json.loads((light_export / MANIFEST_NAME).read_text())
    assert manifest_from_dict(data).to_dict() == data


def test_manifest_fields_replaced_by_odd_values(light_export: Path) -> None:
    data = json.loads((light_export / MANIFEST_NAME).read_text())
    paths = [p for p in leaf_paths(data) if p and (p[0] != "parity" or len(p) <= 2)]
    rng = np.random.default_rng(SEED)
    chosen = [paths[int(i)] for i in rng.choice(len(paths), size=min(60, len(paths)), replace=False)]
    results = [
        outcome(lambda p=path, v=value: manifest_from_dict(mutated(data, p, v)), (ManifestError,))
        for path in chosen
        for value in ODD_VALUES
    ]
    assert len(results) == 60 * len(ODD_VALUES) and results.count("ManifestError") > len(results) // 2


def manifest_file_cases(text: bytes) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(SEED)
    cases = [(f"random{i}", rng.bytes(int(rng.integers(1, 4000)))) for i in range(10)]
    cases += [(f"cut{i}", text[: int(cut)]) for i, cut in enumerate(rng.integers(0, len(text), 15))]
    cases += [
        ("empty", b""),
        ("not-utf8", b"\xff\xfe" + text),
        ("deep", b"[" * 100_000 + b"]" * 100_000),
        ("huge-int", b'{"format_version": ' + b"9" * 5000 + b"}"),
        ("inf", b'{"format_version": 1e999}'),
        ("array", b"[1, 2, 3]"),
        ("null", b"null"),
    ]
    return cases


def test_manifest_files_of_random_bytes_truncated_or_odd(light_export: Path, tmp_path: Path) -> None:
    text = (light_export / MANIFEST_NAME).read_bytes()
    cases = manifest_file_cases(text)
    for name, content in cases:
        folder = tmp_path / name
        folder.mkdir()
        (folder / MANIFEST_NAME).write_bytes(content)
        assert outcome(lambda f=folder: load_manifest(f), (ManifestError,)) == "ManifestError", name
        assert snapshot(folder) == {MANIFEST_NAME: content}
    assert len(cases) == 32


# ------------------------------------------------------------------------------------ feature store


@pytest.fixture(scope="module")
def stored(light_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    photo = np.random.default_rng(SEED).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    return save_features(
        Encoder(light_export, threads=1).encode(photo, name="photo.png"),
        tmp_path_factory.mktemp("fuzz_store") / "photo.png.npz",
    )


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def with_meta(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """``arrays`` with ``meta``, its digest recomputed when it parses (so the checks behind the digest run)."""
    try:
        parsed = FeatureMeta.from_json(json.dumps(meta), "fuzz")
        meta = {**meta, "content_sha256": content_digest(parsed, {n: arrays[n] for n in FEATURE_NAMES})}
    except (FeatureFileError, KeyError, TypeError, ValueError):
        pass
    return {**arrays, META_KEY: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}


def forged_header_npz(path: Path, arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> Path:
    """An ``.npz`` whose member ``name`` declares ``shape`` (terabytes) but holds a few bytes."""
    write_npz(path, {k: v for k, v in arrays.items() if k != name})
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f2", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{name}.npy", buffer.getvalue() + b"\x00" * 64)
    return path


def feature_cases(stored: Path, folder: Path) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(SEED)
    data = stored.read_bytes()
    with np.load(stored) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays[META_KEY].tobytes())
    cases: list[tuple[str, Path]] = []

    def add(name: str, content: bytes | dict[str, np.ndarray]) -> None:
        path = folder / f"{name}.npz"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_npz(path, content)
        cases.append((name, path))

    for i in range(8):
        add(f"random{i}", rng.bytes(int(rng.integers(1, 5000))))
    for i, cut in enumerate(rng.integers(1, len(data), 12)):
        add(f"cut{i}", data[: int(cut)])
    for i, at in enumerate(rng.integers(0, len(data), 12)):
        flipped = bytearray(data)
        flipped[int(at)] ^= 0xFF
        add(f"flip{i}", bytes(flipped))
    for key in (
        "model_id",
        "original_size",
        "encoded_size",
        "padded_size",
        "scale",
        "dtype",
        "max_side",
        "version",
        "format",
        "content_sha256",
    ):
        for j, value in enumerate(ODD_VALUES[:10]):
            add(f"meta-{key}-{j}", with_meta(arrays, {**meta, key: value}))
    add("meta-missing", {k: v for k, v in arrays.items() if k != META_KEY})
    add("meta-not-json", {**arrays, META_KEY: np.frombuffer(b"{not json", dtype=np.uint8)})
    add("meta-float", {**arrays, META_KEY: np.zeros(8, dtype=np.float32)})
    add("meta-2d", {**arrays, META_KEY: arrays[META_KEY].reshape(1, -1)})
    feat = arrays["feat1"]
    for j, bad in enumerate(
        [
            feat.astype(np.int32),
            feat.astype(np.float64),
            feat[..., :1],
            feat[0],
            feat[None],
            np.zeros((1, 0, *feat.shape[2:]), np.float16),
            np.full_like(feat, np.inf),
            np.full_like(feat, 1e4),
            feat.astype(np.complex64),
            np.zeros((), np.float16),
        ]
    ):
        add(f"feat1-{j}", with_meta({**arrays, "feat1": bad}, meta))
    add("feat3-missing", with_meta({k: v for k, v in arrays.items() if k != "feat3"}, meta))
    add("header-terabytes", b"")
    forged_header_npz(folder / "header-terabytes.npz", arrays, "feat0", (1, 32, 10**6, 10**6))
    add("meta-huge-sizes", with_meta(arrays, {**meta, "original_size": [2**20, 2**20], "scale": 1e-4}))
    return cases


def test_feature_files_of_random_bytes_truncated_mutated_or_forged(
    light_export: Path, stored: Path, tmp_path: Path
) -> None:
    cases = feature_cases(stored, tmp_path)
    before = snapshot(tmp_path)
    decoder = Decoder(light_export, threads=1)
    results = {}
    for name, path in cases:
        results[name] = outcome(
            lambda p=path: ClickSession(decoder, p).add_click(5, 5, True), (FeatureFileError, ModelMismatchError)
        )
    assert snapshot(tmp_path) == before, "a reader wrote or changed a file"
    assert len(cases) == 149
    ok = sorted(name for name, result in results.items() if result == "ok")
    # Accepted, rightly: finite features of float16 range, max_side None (no limit), and digests
    # replaced by with_meta's recomputed one (so those files are intact).
    assert ok == ["feat1-7", "meta-content_sha256-1", "meta-content_sha256-2", "meta-max_side-0"], ok
    assert results["header-terabytes"] == "FeatureFileError"


# ------------------------------------------------------------------------------------ click API


def test_click_api_with_odd_coordinates_and_labels(light_export: Path, stored: Path) -> None:
    session = ClickSession(Decoder(light_export, threads=1), load_features(stored))
    height, width = session.height, session.width
    rng = np.random.default_rng(SEED)
    coordinates: list[Any] = [
        0,
        height - 1,
        width - 1,
        -1,
        height,
        width,
        10**30,
        -(10**30),
        1.5,
        "3",
        None,
        np.float32(2),
        np.int64(2**62),
        np.uint8(3),
        True,
        np.bool_(True),
        [1],
        float("nan"),
    ]
    polarities: list[Any] = [True, False, np.bool_(True), None, "no", 1, 0.0]
    results = []
    for _ in range(120):
        y, x = (coordinates[int(i)] for i in rng.integers(0, len(coordinates), 2))
        positive = polarities[int(rng.integers(0, len(polarities)))]
        results.append(outcome(lambda y=y, x=x, p=positive: session.add_click(y, x, p), (ClickError,)))
        if rng.random() < 0.2:
            results.append(outcome(session.undo, (ClickError,)))
    session.reset()
    assert outcome(session.undo, (ClickError,)) == "ClickError"
    labels: list[Any] = [
        np.zeros((height, width), np.uint8),
        np.full((height, width), 9, np.uint8),
        np.full((height, width), -1, np.int16),
        np.zeros((height, width), np.float32),
        np.zeros((height + 1, width), np.uint8),
        np.zeros((height,), np.uint8),
    ]
    label_results = [outcome(lambda r=r: session.predict(r), (ClickError, ModelMismatchError)) for r in labels]
    assert label_results == ["ok", "ClickError", "ClickError", "ClickError", "ModelMismatchError", "ModelMismatchError"]
    assert "ok" in results and "ClickError" in results and len(results) >= 120
