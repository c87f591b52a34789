"""``interformer-encode``: a folder into a feature store with worker processes; resumable; bad images skipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from encode_checks import help_rows
from PIL import Image
from typer.testing import CliRunner

from interformer_edge.core.cli_kit import EXIT_FAILURES, EXIT_INTERRUPTED
from interformer_edge.core.manifest import load_manifest
from interformer_edge.runtime.cli import app
from interformer_edge.runtime.features import load_features, model_id, read_meta

IMAGES = 50


def make_folder(root: Path, side: int = 24) -> Path:
    """50 small images of assorted kinds (RGB/gray/RGBA/palette PNG, JPEG), one broken file, one non-image."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    for index in range(IMAGES):
        rgb = rng.integers(0, 256, (side + index % 7, side + 6 + index % 5, 3), dtype=np.uint8)
        image = Image.fromarray(rgb)
        kind = index % 5
        if kind == 1:
            image = image.convert("L")
        elif kind == 2:
            image = image.convert("RGBA")
        elif kind == 3:
            image = image.convert("P")
        image.save(folder / f"img{index:02d}.{'jpg' if kind == 4 else 'png'}")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def encode_args(folder: Path, export: Path, store: Path, *extra: str) -> list[str]:
    return ["encode", str(folder), "--model", str(export), "--out", str(store), "--threads", "1", *extra]


def store_state(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in store.glob("*.npz")}


def summary(output: str) -> dict[str, str]:
    """The rows of the summary table (``│ encoded │ 25 │``)."""
    return {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in output.splitlines() if line.count("│") == 3
    }


def test_encode_folder_with_two_workers_skips_what_is_stored(light_export: Path, tmp_path: Path) -> None:
    folder, store = make_folder(tmp_path), tmp_path / "store"
    half = tmp_path / "half"  # the first 25 images, encoded beforehand into the same store
    half.mkdir()
    for path in sorted(folder.glob("img*"))[: IMAGES // 2]:
        shutil.copy2(path, half / path.name)
    runner = CliRunner()
    result = runner.invoke(app, encode_args(half, light_export, store))
    assert result.exit_code == 0 and summary(result.output)["encoded"] == str(IMAGES // 2), result.output
    first = store_state(store)

    result = runner.invoke(app, encode_args(folder, light_export, store, "--workers", "2", "--batch", "4"))
    assert result.exit_code == EXIT_FAILURES, result.output  # the broken image is reported, the rest done
    assert "failed: broken.jpg" in result.output
    rows = summary(result.output)
    assert (rows["encoded"], rows["skipped (up to date)"], rows["failed"]) == (str(IMAGES // 2), str(IMAGES // 2), "1")
    second = store_state(store)
    assert len(second) == IMAGES and "notes.txt.npz" not in second
    assert {name: second[name] for name in first} == first, "already encoded images were encoded again"

    meta = read_meta(store / "img07.png.npz")
    assert meta.model_id == model_id(load_manifest(light_export)) and meta.image_name == "img07.png"
    assert meta.original_size == (24, 32) and meta.encoder.startswith("onnxruntime:")
    assert load_features(store / "img03.png.npz").maps["feat0"].dtype == np.float16


def test_interrupted_encode_keeps_complete_files_and_resumes(light_export: Path, tmp_path: Path) -> None:
    folder, store = make_folder(tmp_path, side=160), tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "interformer_edge.runtime.cli",
        *encode_args(folder, light_export, store, "--workers", "2", "--batch", "1"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not store_state(store) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # Ctrl-C: running images finish, queued ones are cancelled
    stdout, stderr = process.communicate(timeout=120)
    first = store_state(store)
    if process.returncode == EXIT_INTERRUPTED:
        assert "interrupted" in stdout and int(summary(stdout)["not started"]) > 0
    else:  # the run finished before the signal arrived (a very fast machine): resuming must still skip it all
        assert process.returncode == EXIT_FAILURES, stderr
    assert first and not list(store.glob(".*")), "an interrupted run left temporary files"
    for path in store.glob("*.npz"):
        load_features(path)  # every file that exists is complete

    result = CliRunner().invoke(app, encode_args(folder, light_export, store, "--workers", "2"))
    assert result.exit_code == EXIT_FAILURES, result.output
    rows = summary(result.output)
    assert (rows["encoded"], rows["skipped (up to date)"]) == (str(IMAGES - len(first)), str(len(first)))
    second = store_state(store)
    assert len(second) == IMAGES and {name: second[name] for name in first} == first


def test_encode_redoes_changed_images_and_other_settings(light_export: Path, tiny_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(folder / f"a{index}.png")
    store = tmp_path / "store"
    runner = CliRunner()
    assert runner.invoke(app, encode_args(folder, light_export, store)).exit_code == 0
    before = store_state(store)

    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(folder / "a1.png")  # image changed
    os.utime(store / "a0.png.npz", ns=(0, 0))
    assert runner.invoke(app, encode_args(folder, light_export, store)).exit_code == 0
    after = store_state(store)
    assert after["a1.png.npz"] != before["a1.png.npz"] and after["a2.png.npz"] == before["a2.png.npz"]
    assert after["a0.png.npz"] == 0  # unchanged image: skipped (its file was not rewritten)

    (store / "a2.png.npz").write_bytes(b"garbage")  # a damaged store file is replaced
    result = runner.invoke(app, encode_args(folder, tiny_export, store))  # another model: everything again
    assert result.exit_code == 0, result.output
    tiny_id = model_id(load_manifest(tiny_export))
    assert all(read_meta(p).model_id == tiny_id for p in store.glob("*.npz"))

    result = runner.invoke(app, encode_args(folder, tiny_export, store, "--max-side", "16", "--dtype", "float32"))
    assert result.exit_code == 0, result.output
    meta = read_meta(store / "a0.png.npz")
    assert meta.encoded_size == (11, 16) and meta.original_size == (20, 28) and meta.max_side == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dtype", "int8"], "--dtype"),
        (["--backend", "tensorrt"], "unknown backend"),
        (["--backend", "onnxruntime", "--compute", "bf16"], "needs openvino"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "needs openvino"),  # the deprecated spelling
    ],
)
def test_encode_refuses_bad_options_before_starting(
    args: list[str], message: str, light_export: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, encode_args(tmp_path, light_export, tmp_path / "store", *args))
    assert result.exit_code == 2 and message in result.output
    assert result.stderr.splitlines()[-1].startswith("interformer-encode: error: "), result.stderr
    assert not (tmp_path / "store").exists()
    result = CliRunner().invoke(app, encode_args(tmp_path, tmp_path, tmp_path / "store"))
    assert result.exit_code == 2 and "manifest" in result.output


def test_click_command_writes_mask_at_original_size(light_export: Path, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(image)
    runner = CliRunner()
    assert runner.invoke(app, encode_args(image, light_export, tmp_path / "store", "--max-side", "32")).exit_code == 0
    mask_path = tmp_path / "mask.png"
    result = runner.invoke(
        app,
        [
            "click",
            str(tmp_path / "store" / "cat.png.npz"),
            "--model",
            str(light_export),
            "--at",
            "20,30",
            "--at",
            "5,5,neg",
            "--out",
            str(mask_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(" ms") == 2
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (45, 60) and set(np.unique(mask)) <= {0, 255}
    result = runner.invoke(
        app, ["click", str(tmp_path / "store" / "cat.png.npz"), "--model", str(light_export), "--at", "45,0"]
    )
    assert result.exit_code == 2 and "outside" in result.output
    assert result.stderr.strip() == "interformer-encode: error: click (45, 0) lies outside the 45x60 image"


def test_the_old_precision_spelling_still_works_with_one_warning_line(light_export: Path, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(image)
    runner, store = CliRunner(), tmp_path / "store"
    warning = "interformer-encode: warning: --precision is deprecated, use --compute"
    result = runner.invoke(app, encode_args(image, light_export, store, "--precision", "f32"))
    assert result.exit_code == 0 and result.stderr.splitlines()[0] == warning, result.output
    assert result.stderr.count("warning") == 1 and (store / "cat.png.npz").is_file()
    click = ["click", str(store / "cat.png.npz"), "--model", str(light_export), "--at", "5,5"]
    result = runner.invoke(app, [*click, "--out", str(tmp_path / "mask.png"), "--precision", "f32"])
    assert result.exit_code == 0 and result.stderr.strip() == warning, result.output
    result = runner.invoke(app, [*click, "--out", str(tmp_path / "mask.png"), "--compute", "f32"])
    assert result.exit_code == 0 and not result.stderr, result.stderr


def test_help_explains_every_flag() -> None:
    runner = CliRunner()
    for command, flags in {
        "encode": [
            "--model",
            "--out",
            "--workers",
            "--threads",
            "--batch",
            "--max-side",
            "--backend",
            "--compute",
            "--dtype",
            "--recursive",
            "--force",
        ],
        "click": ["--model", "--at", "--out", "--threads", "--backend", "--compute", "--zoom-in"],
    }.items():
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0
        rows = help_rows(result.output)
        for flag in flags:
            assert len(rows.get(flag, "")) > 10, f"{command} {flag} has no explanation"
        assert "--precision" not in result.output  # deprecated: accepted, not shown
        assert max(len(line) for line in result.output.splitlines()) <= 80, "help wider than the terminal"
