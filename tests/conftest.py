"""Test-wide settings and the export fixtures: deterministic; two threads, or one per worker when pytest-xdist
runs two workers (the CI machine has two cores: ``scripts/test.sh`` runs ``-n 2``).

Works without torch (the lean install, e.g. ``scripts/arm64/run_tests.py``): torch is imported only where it
is needed, the export fixtures then copy prebuilt exports, and tests that need torch are skipped
(``lean_install.py``). A test whose own code imports torch is marked ``torch``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Helpers that live beside the tests (golden_weights.py, lean_install.py) are imported by name.
sys.path.insert(0, str(Path(__file__).parent))
from lean_install import has_prebuilt, imports_torch, installed, prebuilt_export, skip_reason

HAVE_TORCH = installed("torch")
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if HAVE_TORCH:
    import torch

    torch.set_num_threads(1 if XDIST_WORKER else 2)
    torch.manual_seed(0)


# The files that take longest on two workers (``scripts/test.sh --durations=20``), run first: pytest-xdist hands out
# whole files in collection order, so a long file collected late would leave one worker running it alone at the end.
LONGEST_FIRST = (
    "test_default_model_int8.py",
    "test_bench.py",
    "test_export_refine.py",
    "test_annotate_browser_decode.py",
    "test_export.py",
    "test_training.py",
    "test_quantize.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    # Runs before ``-m`` deselects: ``-m "not torch"`` sees these markers.
    for item in items:
        if imports_torch(item):
            item.add_marker(pytest.mark.torch)
        # Per test, not in the fixtures: a session-scoped fixture cannot see the requesting test's markers.
        reason = None if HAVE_TORCH else skip_reason(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(root)`` run once per test run, even with several xdist workers: the first worker builds into
    a folder beside the workers' own temporary roots (under a file lock), the others reuse it."""
    if XDIST_WORKER is None:
        return build(factory.mktemp(name))
    from filelock import FileLock  # a dependency of torch, which every build here needs

    shared = factory.getbasetemp().parent / f"shared-{name}"
    with FileLock(str(shared) + ".lock"):
        done = shared / ".built"
        if not done.is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            done.write_text(str(build(shared)))
    return Path(done.read_text())


# ------------------------------------------------------------------ exported models for the runtime tests

RUNTIME_GATE_SIZE = ((64, 96),)  # the exporter's parity gate at one small size: these tests are about the runtime


def small_checkpoint(path: Path, neck: str, seed: int = 0, click_sensitive: bool = True) -> Path:
    """A random-weight checkpoint in the official mmcv layout (``module.`` prefixes, mmcv meta): the given
    preset's neck behind a reduced ViT (width 64, one layer, one head).

    The position tables and the reference-label embedding start at zero; random values make their paths
    matter. ``click_sensitive`` (the runtime tests): plain random initialisation gives near-constant
    masks that ignore the clicks, so those tables are drawn at N(0, 1), the classifier is 30x larger and
    the tables are for 128 px, and the masks change with every click (per-click parity means something).
    Otherwise (the exporter's accuracy tests) N(0, 0.2) and the preset's own table size.
    """
    from dataclasses import replace

    import torch

    from interformer_edge.models import build_interformer, preset

    torch.manual_seed(seed)
    cfg = replace(preset(neck), name=f"small_{neck}", embed_dims=64, depth=1, num_heads=1)
    if click_sensitive:
        cfg = replace(cfg, img_size=128)
    model = build_interformer(cfg)
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name.endswith(("pos_embed", "cls_token", "relative_position_bias_table", "neck.patch_embed")):
                value.normal_(0.0, 1.0 if click_sensitive else 0.2)
        if click_sensitive:
            model.decode_head.conv_seg.weight.mul_(30.0)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"meta": {"mmcv_version": "1.6.0", "iter": 1}, "state_dict": state}, path)
    return path


def export_for_runtime(checkpoint: Path, out_dir: Path) -> Path:
    """Export ``checkpoint`` (ONNX + OpenVINO, dynamic shapes) with the exporter's Python API; returns the folder."""
    from interformer_edge.export.parity import GateSettings
    from interformer_edge.export.pipeline import ExportOptions, run_export

    # simplify=False: onnxslim adds ~10 s per graph and the runtime must run unsimplified graphs too.
    result = run_export(
        ExportOptions(
            checkpoint=checkpoint,
            out_dir=out_dir,
            simplify=False,
            gate=GateSettings(sizes=RUNTIME_GATE_SIZE, threads=1),
        )
    )
    assert result.passed, [c for c in result.manifest.parity.checks if not c.passed]
    return out_dir


@pytest.fixture(scope="session")
def light_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export folder of a small Light-neck model (no refine stages, no roi input)."""
    if not HAVE_TORCH:
        return prebuilt_export("light", tmp_path_factory)
    return built_once(
        tmp_path_factory,
        "runtime_light",
        lambda root: export_for_runtime(small_checkpoint(root / "light.pth", "light"), root / "export"),
    )


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export folder of a small Tiny-neck model (refine stages: roi input, zoom-in)."""
    if not HAVE_TORCH:
        return prebuilt_export("tiny", tmp_path_factory)
    return built_once(
        tmp_path_factory,
        "runtime_tiny",
        lambda root: export_for_runtime(small_checkpoint(root / "tiny.pth", "tiny", seed=2), root / "export"),
    )


@pytest.fixture(scope="session")
def default_export(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, str]:
    """The bundled default model exported, or (until it is bundled) the small Light model; and which one it is."""
    from interformer_edge.assets import DEFAULT_CHECKPOINT

    if not HAVE_TORCH:
        if has_prebuilt("default"):
            return prebuilt_export("default", tmp_path_factory), "default"
        return request.getfixturevalue("light_export"), "random small light"
    if not DEFAULT_CHECKPOINT.is_file():
        return request.getfixturevalue("light_export"), "random small light"
    return built_once(
        tmp_path_factory, "runtime_default", lambda root: export_for_runtime(DEFAULT_CHECKPOINT, root / "export")
    ), "default"


# ------------------------------------------------------------------ stored features


@pytest.fixture(scope="module")
def stored_features(light_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature-store file of one small random photo ("photo.png", 70x90), encoded with ``light_export``."""
    import numpy as np

    from interformer_edge.runtime.encoder import Encoder
    from interformer_edge.runtime.features import save_features

    photo = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("store") / "photo.png.npz"
    return save_features(Encoder(light_export, threads=1).encode(photo, name="photo.png"), path)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of two bundled photos of the test's own (chelsea.jpg 451x300, coffee.jpg), as the annotator serves."""
    from interformer_edge.assets import PHOTOS_DIR

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        (folder / name).write_bytes((PHOTOS_DIR / name).read_bytes())
    return folder
