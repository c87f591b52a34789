"""The torch-free runtime: backends, feature store, click session semantics, bad input, and no torch inside."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interformer_edge.core.image_io import as_rgb_array, read_rgb, to_rgb_array
from interformer_edge.core.manifest import load_manifest
from interformer_edge.core.preprocess import resize_bilinear
from interformer_edge.core.spec import FEATURE_NAMES, IMAGE_INPUT, LOGITS_OUTPUT
from interformer_edge.runtime import (
    BackendError,
    ClickError,
    ClickSession,
    Decoder,
    Encoder,
    FeatureFileError,
    ImageReadError,
    ModelMismatchError,
    load_features,
    load_graph,
    read_meta,
    save_features,
)
from interformer_edge.runtime.features import ImageFeatures, model_id


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def light(light_export: Path) -> tuple[Encoder, Decoder]:
    return Encoder(light_export, threads=1), Decoder(light_export, threads=1)


@pytest.fixture(scope="module")
def features(light: tuple[Encoder, Decoder]) -> ImageFeatures:
    return light[0].encode(photo(70, 90), name="photo.png")


# ------------------------------------------------------------------------------------------- backends


def test_backends_load_by_folder_or_file_and_agree(light_export: Path) -> None:
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    auto = load_graph(light_export, "encoder", threads=1)
    assert auto.backend == "onnxruntime" and auto.input_names == [IMAGE_INPUT]
    ov = load_graph(light_export / "encoder.xml", threads=1)  # a file: the format picks the backend
    assert ov.backend == "openvino" and ov.output_names == list(FEATURE_NAMES)
    a, b = auto.run({IMAGE_INPUT: image}), ov.run({IMAGE_INPUT: image})
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(a[name], b[name], atol=1e-4)
    assert load_graph(light_export, "decoder", backend="openvino", precision="device").backend == "openvino"


def test_openvino_threads_are_not_pinned_to_cores(light_export: Path) -> None:
    # OpenVINO pins by default on Linux, from the first core: processes with one thread each would share it.
    for threads in (1, 2):
        graph = load_graph(light_export, "decoder", backend="openvino", threads=threads)
        assert graph._compiled.get_property("ENABLE_CPU_PINNING") is False
        assert int(graph._compiled.get_property("INFERENCE_NUM_THREADS")) == threads


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_static_shape_decoders_compile_per_size_and_give_the_same_clicks(
    light: tuple[Encoder, Decoder], light_export: Path, backend: str
) -> None:
    encoder, _ = light
    dynamic = Decoder(light_export, backend, threads=1)
    static = Decoder(light_export, backend, threads=1, static_shapes=True)
    assert static.graph.compiled == 0
    for index, (height, width) in enumerate([(70, 90), (40, 130), (96, 64)]):
        features = encoder.encode(photo(height, width, seed=index))
        a, b = ClickSession(dynamic, features), ClickSession(static, features)
        assert static.graph.compiled == min(index + 1, 2)  # compiled when the session opened; two sizes kept
        for y, x, positive in [(height // 2, width // 2, True), (3, 3, False), (height - 5, width // 3, True)]:
            np.testing.assert_array_equal(a.add_click(y, x, positive), b.add_click(y, x, positive))
            np.testing.assert_allclose(a.logit_difference, b.logit_difference, atol=1e-4)
    assert static.graph.compiled == 2


def test_backend_options_are_checked(light_export: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown backend"):
        load_graph(light_export, "encoder", backend="tensorrt")
    with pytest.raises(BackendError, match="needs openvino"):
        load_graph(light_export, "encoder", backend="onnxruntime", precision="bf16")
    with pytest.raises(BackendError, match="unknown precision"):
        load_graph(light_export, "encoder", precision="int4")
    with pytest.raises(BackendError, match="threads"):
        load_graph(light_export, "encoder", threads=0)
    with pytest.raises(BackendError, match="cannot run on openvino"):
        load_graph(light_export / "encoder.onnx", backend="openvino")
    with pytest.raises(BackendError, match="no graph file"):
        load_graph(tmp_path / "missing.onnx")
    graph = load_graph(light_export, "encoder", threads=1)
    with pytest.raises(BackendError, match="failed to run"):
        graph.run({"wrong_name": np.zeros((1, 3, 32, 32), np.float32)})
    # An export folder whose manifest lists only OpenVINO files makes "auto" fall back to OpenVINO.
    manifest = load_manifest(light_export)
    for graph_spec in manifest.graphs.values():
        del graph_spec.files["onnx"]
    assert load_graph(light_export, "encoder", manifest=manifest).backend == "openvino"
    with pytest.raises(BackendError, match="no way to run"):
        load_graph(light_export, "encoder", backend="onnxruntime", manifest=manifest)


# --------------------------------------------------------------------------------------- feature store


def test_feature_store_round_trip(features: ImageFeatures, light: tuple[Encoder, Decoder], tmp_path: Path) -> None:
    path = save_features(features, tmp_path / "sub" / "photo.png.npz")
    assert path.is_file() and not list(path.parent.glob(".*tmp"))  # atomic: no temporary file left
    loaded = load_features(path, light[1].model_id)
    meta = loaded.meta
    assert meta.model_id == model_id(light[1].manifest) and meta.image_name == "photo.png"
    assert (meta.original_size, meta.encoded_size, meta.padded_size, meta.scale) == ((70, 90), (70, 90), (96, 96), 1.0)
    for name in FEATURE_NAMES:
        stored, exact = loaded.maps[name], features.maps[name]
        assert stored.dtype == np.float16 and stored.shape == exact.shape
        np.testing.assert_allclose(stored.astype(np.float32), exact, rtol=2**-10, atol=2**-14)
    # float16 halves the file; float32 keeps the maps exactly
    exact_path = save_features(features, tmp_path / "exact.npz", dtype="float32")
    assert path.stat().st_size < 0.6 * exact_path.stat().st_size
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(load_features(exact_path).maps[name], features.maps[name])
    assert read_meta(path) == meta


def test_feature_store_refuses_other_models_and_damaged_files(
    features: ImageFeatures, light: tuple[Encoder, Decoder], tiny_export: Path, tmp_path: Path
) -> None:
    path = save_features(features, tmp_path / "photo.npz")
    tiny_decoder = Decoder(tiny_export, threads=1)
    with pytest.raises(ModelMismatchError, match="encode the image again"):
        load_features(path, tiny_decoder.model_id)
    with pytest.raises(ModelMismatchError):
        ClickSession(tiny_decoder, path)
    with pytest.raises(ModelMismatchError):
        ClickSession(tiny_decoder, features)

    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(FeatureFileError, match="truncated or corrupt"):
        load_features(truncated)
    with pytest.raises(FeatureFileError):
        ClickSession(light[1], truncated)
    corrupt = tmp_path / "corrupt.npz"  # one flipped byte inside feat0's data: the zip CRC catches it
    offset = data.index(b"feat0.npy") + 4096
    corrupt.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :])
    with pytest.raises(FeatureFileError, match="corrupt"):
        load_features(corrupt)
    other = tmp_path / "other.npz"
    np.savez(other, feat0=np.zeros(3))
    with pytest.raises(FeatureFileError, match="no metadata"):
        load_features(other)
    with pytest.raises(FeatureFileError, match="no feature file"):
        load_features(tmp_path / "missing.npz")
    future = tmp_path / "future.npz"
    meta = json.loads(features.meta.to_json()) | {"version": 99}
    np.savez(future, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(FeatureFileError, match="version 99"):
        load_features(future)


# --------------------------------------------------------------------------------------- click session


def test_click_undo_reset_semantics(features: ImageFeatures, light: tuple[Encoder, Decoder]) -> None:
    session = ClickSession(light[1], features, undo_cache=2)
    assert not session.mask.any() and session.mask.shape == (70, 90) and session.num_clicks == 0
    clicks = [(35, 45, True), (10, 80, False), (60, 20, True), (5, 5, False), (50, 60, True)]
    masks, refs = [], []
    for y, x, positive in clicks:
        masks.append(session.add_click(y, x, positive).copy())
        refs.append(session.ref_label.copy())
    assert session.decoder_runs == len(clicks)  # exactly one decoder run per click
    assert len({m.tobytes() for m in masks}) > 1
    with pytest.raises(ValueError):
        session.mask[0, 0] = True  # read-only view of the state

    np.testing.assert_array_equal(session.undo(), masks[3])  # logits still cached: no decoder run
    np.testing.assert_array_equal(session.ref_label, refs[3])
    assert session.decoder_runs == len(clicks) and session.num_clicks == 4
    for k in (2, 1, 0):  # older than the cache: each undo recomputes the logits once, deterministically
        np.testing.assert_array_equal(session.undo(), masks[k])
        np.testing.assert_array_equal(session.ref_label, refs[k])
    assert session.decoder_runs == len(clicks) + 3
    assert not session.undo().any() and session.num_clicks == 0
    with pytest.raises(ClickError, match="nothing to undo"):
        session.undo()

    # Clicking again after undo continues from the restored state: same as never having made the undone clicks.
    for y, x, positive in clicks[:2]:
        session.add_click(y, x, positive)
    np.testing.assert_array_equal(session.mask, masks[1])
    session.reset()
    assert session.clicks == [] and not session.mask.any() and (session.ref_label == 2).all()
    np.testing.assert_array_equal(session.add_click(*clicks[0]), masks[0])


def test_bad_clicks_and_options_are_refused(features: ImageFeatures, light: tuple[Encoder, Decoder]) -> None:
    session = ClickSession(light[1], features)
    for y, x in [(-1, 0), (0, -1), (70, 0), (0, 90), (10**6, 5)]:
        with pytest.raises(ClickError, match="outside the 70x90 image"):
            session.add_click(y, x)
    for y, x in [(1.5, 2), (True, 3), ("4", 5)]:
        with pytest.raises(ClickError, match="integer"):
            session.add_click(y, x)  # type: ignore[arg-type]
    assert session.num_clicks == 0 and session.decoder_runs == 0
    assert session.add_click(np.int64(3), np.int32(4)).shape == (70, 90)
    with pytest.raises(ModelMismatchError, match="no refine stages"):
        ClickSession(light[1], features, zoom_in=True)


def test_images_of_every_kind_and_bad_images(light: tuple[Encoder, Decoder], tmp_path: Path) -> None:
    encoder = light[0]
    rgb = photo(40, 50)
    reference = encoder.encode(rgb).maps["feat3"]
    gray16 = rgb[..., 0].astype(np.uint16) * 257
    variants = {
        "rgba": np.dstack([rgb, np.full((40, 50), 7, np.uint8)]),  # alpha dropped
        "pil_rgba": Image.fromarray(rgb).convert("RGBA"),
        "pil_palette": Image.fromarray(rgb).convert("P"),
        "pil_gray": Image.fromarray(rgb[..., 0]),
        "gray16": gray16,
        "gray_hw1": rgb[..., :1],
    }
    for name, image in variants.items():
        out = encoder.encode(image)
        assert out.meta.original_size == (40, 50), name
    np.testing.assert_array_equal(as_rgb_array(gray16), as_rgb_array(rgb[..., 0]))
    np.testing.assert_allclose(encoder.encode(variants["rgba"]).maps["feat3"], reference, atol=1e-6)

    # EXIF orientation 6 (rotate 90° clockwise to display) turns a 40x50 file into a 50x40 image.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert encoder.encode(tmp_path / "rotated.jpg").meta.original_size == (50, 40)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    assert read_rgb(tmp_path / "gray16.png").shape == (40, 50, 3)

    for bad in [
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10, 0), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
    ]:
        with pytest.raises(ImageReadError):
            encoder.encode(bad)
    with pytest.raises(ImageReadError, match="cannot convert"):
        to_rgb_array(Image.new("La", (4, 4)))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError):
        encoder.encode(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="not found"):
        encoder.encode(tmp_path / "missing.png")


def test_max_side_gives_masks_at_the_original_size(light: tuple[Encoder, Decoder], tmp_path: Path) -> None:
    encoder, decoder = light
    image = photo(150, 200, seed=3)
    small = encoder.encode(image, max_side=64)
    assert small.meta.original_size == (150, 200) and small.meta.encoded_size == (48, 64)
    assert small.meta.padded_size == (64, 64) and small.meta.scale == pytest.approx(0.32)
    stored = load_features(save_features(small, tmp_path / "small.npz"))
    session = ClickSession(decoder, stored)
    mask = session.add_click(149, 199, positive=True)  # bottom-right pixel maps inside the encoded grid
    mask = session.add_click(75, 100, positive=True)
    assert mask.shape == (150, 200) and mask.dtype == bool
    np.testing.assert_array_equal(session.probability > 0.5, mask)
    with pytest.raises(ModelMismatchError, match="full size"):
        session.predict(session.ref_label)
    # The mask is the bilinear resize of the logit difference at the encoded size, thresholded at 0.
    low = session.logit_difference
    assert low is not None and low.shape == (48, 64)
    np.testing.assert_array_equal(resize_bilinear(low, (150, 200)) > 0, mask)
    # Mostly the same as the nearest upsampling of the low-resolution mask (differences only along edges).
    nearest = (low > 0)[np.arange(150) * 48 // 150][:, np.arange(200) * 64 // 200]
    assert np.mean(nearest == mask) > 0.95


def test_bilinear_resize_matches_pytorch() -> None:
    import torch
    import torch.nn.functional as F

    array = np.random.default_rng(0).standard_normal((7, 11)).astype(np.float32)
    for size in [(20, 31), (7, 11), (3, 5), (14, 22)]:
        expected = F.interpolate(torch.from_numpy(array)[None, None], size=size, mode="bilinear", align_corners=False)[
            0, 0
        ].numpy()
        np.testing.assert_allclose(resize_bilinear(array, size), expected, atol=1e-5)


# ----------------------------------------------------------------------------------------- torch-free


def test_runtime_never_imports_torch(light_export: Path) -> None:
    """Every core and runtime module, and running both backends end to end, in a fresh interpreter without torch."""
    code = f"""
import importlib, pkgutil, sys
import numpy as np
import interformer_edge.core as core
import interformer_edge.runtime as runtime
names = sorted(p.__name__[17:] + "." + m.name for p in (core, runtime) for m in pkgutil.iter_modules(p.__path__))
for name in names:
    importlib.import_module("interformer_edge." + name)
from interformer_edge.runtime import ClickSession, Decoder, Encoder
for backend in ("onnxruntime", "openvino"):
    features = Encoder({str(light_export)!r}, backend=backend, threads=1).encode(np.zeros((40, 50, 3), np.uint8))
    ClickSession(Decoder({str(light_export)!r}, backend=backend, threads=1), features).add_click(20, 25)
bad = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("interformer_edge.models"))
assert not bad, bad
print(" ".join(names))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set(done.stdout.split())
    assert {
        "runtime.backends",
        "runtime.cli",
        "runtime.session",
        "core.clicks",
        "core.manifest",
        "core.spec",
    } <= modules


def test_decoder_output_is_logits_at_the_padded_size(features: ImageFeatures, light: tuple[Encoder, Decoder]) -> None:
    decoder = light[1]
    ref = np.full((1, 1, 96, 96), 2, np.uint8)
    logits = decoder.graph.run({**decoder.image_inputs(features), "ref_label": ref})[LOGITS_OUTPUT]
    assert logits.shape == (1, 2, 96, 96) and logits.dtype == np.float32
