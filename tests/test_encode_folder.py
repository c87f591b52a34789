"""``encode_folder``, the Python API of ``interformer-encode encode``: the command's store, resume, progress,
refusals before anything is written, and the settings value the workers receive."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from encode_checks import assert_same_store_files
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from interformer_edge.core.cli_kit import EXIT_FAILURES
from interformer_edge.core.progress import ProgressReporter
from interformer_edge.runtime import (
    EncodeResult,
    EncodeRunError,
    EncodeSettings,
    encode_folder,
    encode_jobs,
    load_features,
)
from interformer_edge.runtime.cli import app
from interformer_edge.runtime.export import RuntimeSettings

IMAGES = 6


def photo_folder(root: Path) -> Path:
    """``IMAGES`` small photos of a few sizes (one in a sub-folder), one broken JPEG and a text file."""
    rng = np.random.default_rng(4)
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for index in range(IMAGES):
        where = folder / "sub" if index == 0 else folder
        Image.fromarray(rng.integers(0, 256, (20 + 4 * index, 28, 3), dtype=np.uint8)).save(where / f"p{index}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def mtimes(store: Path) -> dict[str, int]:
    return {p.relative_to(store).as_posix(): p.stat().st_mtime_ns for p in store.rglob("*.npz")}


def test_encode_folder_writes_the_commands_store_and_resumes(light_export: Path, tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    settings = EncodeSettings(light_export, RuntimeSettings(threads=1), max_side=24)
    log = io.StringIO()
    with ProgressReporter(Console(file=log, width=80, force_terminal=False)) as progress:
        result = encode_folder(folder, tmp_path / "api", settings, recursive=True, progress=progress)

    assert isinstance(result, EncodeResult) and result.interrupted is None and result.not_started == 0
    assert (result.total, result.workers, result.threads) == (IMAGES + 1, 1, 1)
    assert result.counts == {"encoded": IMAGES, "skipped": 0, "busy": 0, "failed": 1}
    assert [(o.name, o.message.startswith("cannot read image")) for o in result.failed] == [("broken.jpg", True)]
    lines = log.getvalue().splitlines()
    assert lines[0] == f"model {result.model_id} · {IMAGES + 1} images · 1 worker(s) × 1 thread(s) → {tmp_path / 'api'}"
    assert (
        f"encoding: started ({IMAGES + 1} to do)" in lines
        and f"encoding: done {IMAGES + 1}/{IMAGES + 1}" in log.getvalue()
    )
    assert any(line.startswith("failed broken.jpg: cannot read image") for line in lines)

    command = ["encode", str(folder), "-m", str(light_export), "-o", str(tmp_path / "cli"), "-t", "1", "-r"]
    cli = CliRunner().invoke(app, [*command, "--max-side", "24"])
    assert cli.exit_code == EXIT_FAILURES, cli.output
    names = sorted(mtimes(tmp_path / "api"))
    assert names == sorted(mtimes(tmp_path / "cli")) and "sub/p0.png.npz" in names and len(names) == IMAGES
    assert_same_store_files(tmp_path / "api", tmp_path / "cli", names)
    assert load_features(tmp_path / "api" / "p5.png.npz").meta.max_side == 24

    before = mtimes(tmp_path / "api")
    again = encode_folder(folder, tmp_path / "api", settings, recursive=True)  # silent: no reporter
    assert again.counts == {"encoded": 0, "skipped": IMAGES, "busy": 0, "failed": 1}
    assert mtimes(tmp_path / "api") == before, "up-to-date images were written again"
    other_side = EncodeSettings(light_export, RuntimeSettings(threads=1))  # the default max_side
    other = encode_folder(folder, tmp_path / "api", other_side, recursive=True)
    assert other.counts["encoded"] == IMAGES, "another max_side must encode again"


def test_encode_folder_refuses_bad_input_before_writing_anything(light_export: Path, tmp_path: Path) -> None:
    folder, store = photo_folder(tmp_path), tmp_path / "store"
    settings = EncodeSettings(light_export, RuntimeSettings(threads=1))
    image_list = tmp_path / "photos.txt"
    image_list.write_text("photos/p1.png\n")
    for source, run_settings, message in [
        (tmp_path / "gone", settings, "does not exist"),
        (folder, EncodeSettings(tmp_path, RuntimeSettings(threads=1)), "manifest"),
        (folder, EncodeSettings(light_export, RuntimeSettings("onnxruntime", 1, "bf16")), "needs openvino"),
        (folder, EncodeSettings(light_export, RuntimeSettings("tensorrt", 1)), "unknown backend"),
        (image_list, settings, "lists are read by --engine ray"),
    ]:
        with pytest.raises(EncodeRunError, match=message):
            encode_folder(source, store, run_settings)
    with pytest.raises(ValueError, match="engine"):
        encode_folder(folder, store, settings, engine="spark")
    with pytest.raises(ValueError, match="dtype"):
        EncodeSettings(light_export, dtype="int8")
    assert not store.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = encode_folder(empty, store, settings)
    assert (nothing.total, nothing.outcomes, nothing.counts["encoded"]) == (0, (), 0) and not store.exists()


def test_workers_get_one_picklable_settings_value(light_export: Path) -> None:
    settings = EncodeSettings(str(light_export), RuntimeSettings("onnxruntime", 1, "f32"), 0, "float32", True)
    assert settings.model == light_export and pickle.loads(pickle.dumps(settings)) == settings  # pool and Ray
    assert settings.with_threads(3).runtime == RuntimeSettings("onnxruntime", 3, "f32")
    encode_jobs.init_worker(settings, in_pool=False)
    assert settings == encode_jobs._SETTINGS and encode_jobs._ENCODER.max_side == 0
