# Over 400 lines on purpose: the cases of one issue (#16), one section per kind of input.
"""Issue #16: what a careless or hostile user meets — each case fed as the issue saw it, its answer asserted."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from click.testing import Result
from conftest import small_checkpoint
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from interformer_edge.core.atomic import atomic_target, write_atomic
from interformer_edge.core.manifest import load_manifest, write_manifest
from interformer_edge.core.progress import Countdown, ProgressReporter
from interformer_edge.core.spec import DEFAULT_MAX_SIDE, FEATURE_NAMES
from interformer_edge.export.cli import EXIT_BAD_INPUT
from interformer_edge.export.cli import app as export_app
from interformer_edge.quantize.calibration import CalibrationError, read_calibration_images
from interformer_edge.runtime import cli as encode_cli
from interformer_edge.runtime import encode_jobs, memory
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import ClickError, FeatureFileError, MemoryBudgetError, ModelMismatchError
from interformer_edge.runtime.features import (
    META_KEY,
    ImageFeatures,
    content_digest,
    load_features,
    save_features,
)
from interformer_edge.runtime.session import ClickSession
from interformer_edge.runtime.store import lock_path

MiB = 2**20


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------ big photos


# Peak RSS growth of one encode on ONNX Runtime, measured for the estimate's fit (runtime/memory.py).
MEASURED_PEAK_MIB = {
    (3, 192): {512: 84, 1024: 1168, 1536: 4872},  # the bundled default model
    (1, 64): {512: 48, 1024: 643, 1536: 2778},  # the small test model
}


@pytest.mark.parametrize("heads, width", list(MEASURED_PEAK_MIB))
def test_memory_estimate_covers_the_measured_peaks(heads: int, width: int) -> None:
    arch = {"patch_size": 16, "num_heads": heads, "embed_dims": width}
    for side, measured in MEASURED_PEAK_MIB[heads, width].items():
        estimate = memory.estimate_encoder_bytes(arch, (side, side)) / MiB
        assert measured <= estimate <= 2 * measured, (side, estimate, measured)
    # Global attention: the side doubled costs about 16x (tokens squared), not 4x.
    ratio = memory.estimate_encoder_bytes(arch, (4096, 4096)) / memory.estimate_encoder_bytes(arch, (2048, 2048))
    assert 14 < ratio <= 16


def test_memory_check_names_max_side_and_the_estimate() -> None:
    arch = {"patch_size": 16, "num_heads": 3, "embed_dims": 192}
    with pytest.raises(MemoryBudgetError) as err:
        memory.check_encoder_memory(arch, (5000, 5000), (5024, 5024), 32, available=8 * 2**30)
    message = str(err.value)
    assert "\n" not in message and "5000x5000" in message and "max_side=" in message
    assert "needs about 516" in message and "only 8.0 GiB is available" in message
    suggested = int(message.split("max_side=")[1].split()[0])
    assert memory.estimate_encoder_bytes(arch, (suggested, suggested)) <= 4 * 2**30  # half of what is free
    assert memory.check_encoder_memory(arch, (1000, 800), (1024, 800), 32, available=8 * 2**30) > 0


def test_big_photo_is_bounded_by_default_and_refused_at_full_size_without_allocating(
    light_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = Encoder(light_export, threads=1)
    assert encoder.max_side == DEFAULT_MAX_SIDE == 1024
    assert encoder.plan(5000, 5000, encoder.max_side)[:2] == ((1024, 1024), (1024, 1024))

    def no_run(inputs: object) -> None:
        raise AssertionError("the encoder ran although the memory check should have refused")

    monkeypatch.setattr(encoder.graph, "run", no_run)
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * 2**30)
    photo = np.zeros((5000, 5000, 3), dtype=np.uint8)
    with pytest.raises(MemoryBudgetError, match=r"5000x5000 image on a 4096x4096 canvas .*max_side=\d+"):
        encoder.encode(photo, max_side=0)  # 0: full size, i.e. the model's own limit of 4096


def test_big_photo_mask_comes_back_at_the_photo_size(light_export: Path) -> None:
    photo = np.random.default_rng(0).integers(0, 256, (1300, 1000, 3), dtype=np.uint8)
    features = Encoder(light_export, threads=2).encode(photo)
    assert features.meta.original_size == (1300, 1000) and features.meta.encoded_size == (1024, 788)
    session = ClickSession(Decoder(light_export, threads=2), features)
    assert session.add_click(650, 500, positive=True).shape == (1300, 1000)


# ------------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def small_checkpoint_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", "light")


@pytest.mark.parametrize("unsafe", [False, True], ids=["safe", "unsafe-load"])
def test_random_bytes_are_not_called_a_checkpoint_with_objects(tmp_path: Path, unsafe: bool) -> None:
    bad = tmp_path / "random.pth"
    bad.write_bytes(np.random.default_rng(3).bytes(5000))
    result = CliRunner().invoke(
        export_app, ["-c", str(bad), "-o", str(tmp_path / "out"), *(["--unsafe-load"] if unsafe else [])]
    )
    assert result.exit_code == EXIT_BAD_INPUT
    message = result.stderr.strip().splitlines()[-1]
    assert "is not a PyTorch checkpoint" in message and "unsafe" not in message and "load key" not in message
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_message_is_a_whole_sentence(small_checkpoint_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth"
    data = small_checkpoint_file.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    result = CliRunner().invoke(export_app, ["-c", str(cut), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_BAD_INPUT
    message = one_line_error(result)
    assert "truncated or damaged" in message and message.endswith("copy or download it again")
    assert "there is a high" not in message


def test_wrong_shape_names_the_architecture_not_the_file(small_checkpoint_file: Path, tmp_path: Path) -> None:
    state = torch.load(small_checkpoint_file, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("decode_head.conv_seg.weight"))  # "module." prefixed
    state["state_dict"][key] = torch.zeros(3, *state["state_dict"][key].shape[1:])
    wrong = tmp_path / "wrongshape.pth"
    torch.save(state, wrong)
    result = CliRunner().invoke(export_app, ["-c", str(wrong), "-o", str(tmp_path / "out")])
    message = one_line_error(result)
    assert "does not fit the inferred (from the checkpoint's tensor shapes) architecture" in message
    assert "'wrongshape'" not in message and "decode_head.conv_seg" in message
    result = CliRunner().invoke(export_app, ["-c", str(wrong), "--arch", "light", "-o", str(tmp_path / "out")])
    assert "does not fit the preset 'light' architecture" in one_line_error(result)


# ------------------------------------------------------------------------------------ calibration


def test_unreadable_calibration_images_are_named_with_the_reason(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"photo{index}.jpg").write_bytes(np.random.default_rng(index).bytes(300))
    with pytest.raises(CalibrationError) as err:
        read_calibration_images(tmp_path, [])
    message = str(err.value)
    assert "\n" not in message and "5 unreadable" in message
    for index in range(5):
        assert f"photo{index}.jpg: cannot identify image file" in message


# ------------------------------------------------------------------------------------ clicks


@pytest.fixture(scope="module")
def stored_features(light_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    photo = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("store") / "photo.png.npz"
    return save_features(Encoder(light_export, threads=1).encode(photo, name="photo.png"), path)


@pytest.mark.parametrize("positive", [None, "no", "yes", 1, 0, 1.0, np.int64(1)])
def test_click_polarity_must_be_a_bool(light_export: Path, stored_features: Path, positive: object) -> None:
    session = ClickSession(Decoder(light_export, threads=1), stored_features)
    with pytest.raises(ClickError, match="positive must be True or False"):
        session.add_click(10, 10, positive=positive)  # type: ignore[arg-type]
    assert session.num_clicks == 0 and session.decoder_runs == 0
    session.add_click(10, 10, positive=np.bool_(False))  # numpy's bool is a bool
    assert session.clicks[0].is_positive is False


# ------------------------------------------------------------------------------------ feature store


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


# ------------------------------------------------------------------------------------ signals


def image_folder(root: Path, count: int, side: int) -> Path:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)).save(folder / f"im{index:02d}.png")
    return folder


def summary_rows(output: str) -> dict[str, str]:
    return {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in output.splitlines() if line.count("│") == 3
    }


def encode_command(folder: Path, export: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "interformer_edge.runtime.cli",
        "encode",
        str(folder),
        "--model",
        str(export),
        "--out",
        str(store),
        "--threads",
        "1",
        *extra,
    ]


def test_a_first_interrupt_lets_the_work_in_hand_finish_a_second_stops_at_once() -> None:
    """In a fresh interpreter (signal handlers belong to the main thread, which a test worker may not be)."""
    code = """
import os, signal
from interformer_edge.runtime.signals import Terminated, finish_in_hand
done = []
try:
    with finish_in_hand():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("finished")
except Terminated:
    done.append("terminated")
try:
    with finish_in_hand():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        done.append("not reached")
except KeyboardInterrupt:
    done.append("stopped")
print(" ".join(done))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["finished", "terminated", "stopped"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_encode_without_orphans_and_prints_a_summary(
    workers: int, light_export: Path, tmp_path: Path
) -> None:
    folder, store = image_folder(tmp_path, 40, 160), tmp_path / "store"
    command = encode_command(folder, light_export, store, "--workers", str(workers), "--batch", "1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        children |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        if len(list(store.glob("*.npz"))) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    stored = list(store.glob("*.npz"))
    if process.returncode == 128 + signal.SIGTERM:
        assert "interrupted by SIGTERM: partial summary" in stdout, stdout
        rows = summary_rows(stdout)
        assert int(rows["encoded"]) == len(stored) >= 2, "the summary must count every image that was stored"
        assert int(rows["not started"]) > 0
    else:  # finished before the signal (a very fast machine): the rest still holds
        assert process.returncode == 0, stderr
    assert len(children) >= (2 if workers == 2 else 0), "the two workers were never seen"
    deadline = time.monotonic() + 1  # the command joins its workers and the resource tracker before exiting
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) for pid in children):
        time.sleep(0.05)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, f"processes left behind: {alive}"
    assert not list(store.glob(".*")), "temporary or claim files left behind"
    for path in stored:
        load_features(path)


# ------------------------------------------------------------------------------------ concurrent writers


def test_a_claimed_image_is_left_to_its_owner_and_a_stale_claim_is_taken_over(
    light_export: Path, tmp_path: Path
) -> None:
    folder, store = image_folder(tmp_path, 2, 40), tmp_path / "store"
    jobs = encode_jobs.list_jobs(folder, store, recursive=False)
    encode_jobs.init_worker(str(light_export), "auto", 1, "f32", DEFAULT_MAX_SIDE, "float16", False, in_pool=False)
    store.mkdir()
    live = lock_path(jobs[0].target)  # held by this very process: alive
    live.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stale = lock_path(jobs[1].target)  # its owner has exited
    stale.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead_pid), "since": time.time()}))
    outcomes = encode_jobs.encode_chunk(jobs)
    assert [o.status for o in outcomes] == ["busy", "encoded"]
    assert f"pid {os.getpid()}" in outcomes[0].message
    assert live.exists() and not stale.exists() and not jobs[0].target.exists()
    load_features(jobs[1].target)


def test_a_crash_on_one_image_is_one_line_with_its_kind_and_the_run_goes_on(
    light_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, store = image_folder(tmp_path, 2, 40), tmp_path / "store"
    jobs = encode_jobs.list_jobs(folder, store, recursive=False)
    encode_jobs.init_worker(str(light_export), "auto", 1, "f32", DEFAULT_MAX_SIDE, "float16", False, in_pool=False)
    store.mkdir()
    encode = encode_jobs._ENCODER.encode

    def crash_on_the_first(image: object, **kwargs: object) -> object:
        if kwargs.get("name") == jobs[0].name:
            raise RuntimeError("backend crashed\n  in frame 7\n  in frame 8")
        return encode(image, **kwargs)

    monkeypatch.setattr(encode_jobs._ENCODER, "encode", crash_on_the_first)
    outcomes = encode_jobs.encode_chunk(jobs)
    assert (outcomes[0].status, outcomes[0].message) == ("failed", "RuntimeError: backend crashed")
    assert outcomes[1].status == "encoded" and not jobs[0].target.exists()
    load_features(jobs[1].target)


def test_two_runs_on_one_store_encode_every_image_once(light_export: Path, tmp_path: Path) -> None:
    count = 24
    folder, store = image_folder(tmp_path, count, 128), tmp_path / "store"
    runs = [
        subprocess.Popen(
            encode_command(folder, light_export, store, "--batch", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    rows = [summary_rows(out) for out, _ in outputs]
    encoded = sum(int(r["encoded"]) for r in rows)
    assert encoded == count, rows  # never twice: each image is encoded by exactly one of the runs
    assert len(list(store.glob("*.npz"))) == count and not list(store.glob(".*"))


# ------------------------------------------------------------------------------------ file modes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(
    umask: int, mode: int, light_export: Path, stored_features: Path, tmp_path: Path
) -> None:
    previous = os.umask(umask)
    try:
        report = write_atomic(tmp_path / "report.json", "{}")
        with atomic_target(tmp_path / "plot.png") as tmp:
            tmp.write_bytes(b"png")
        manifest = write_manifest(load_manifest(light_export, verify_hashes=False), tmp_path)
        store = save_features(load_features(stored_features), tmp_path / "store" / "photo.npz")
    finally:
        os.umask(previous)
    for path in (report, tmp_path / "plot.png", manifest, store):
        assert path.stat().st_mode & 0o777 == mode, (path.name, oct(path.stat().st_mode))
    assert not list(tmp_path.glob(".*")) and not list((tmp_path / "store").glob(".*"))


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    (tmp_path / "keep.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_target(tmp_path / "keep.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert (tmp_path / "keep.json").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]


# ------------------------------------------------------------------------------------ progress in logs


def test_progress_prints_lines_when_not_on_a_terminal() -> None:
    buffer = io.StringIO()
    now = [0.0]
    console = Console(file=buffer, width=40, force_terminal=False)
    with ProgressReporter(console, percent_step=25, interval=1000, clock=lambda: now[0]) as progress:
        tick = progress.step("simulating calibration click sessions", 8)
        for done in range(1, 9):
            now[0] += 10
            tick(done)
        progress.note("an error message much longer than forty columns stays on one line in a log file")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "simulating calibration click sessions: started (8 to do)"
    assert lines[1] == "simulating calibration click sessions: 2/8 (25 %), 20 s elapsed, about 1 min 00 s left"
    assert [line.split(": ")[1].split(" (")[0] for line in lines[1:4]] == ["2/8", "4/8", "6/8"]
    assert lines[4] == "simulating calibration click sessions: done 8/8 in 1 min 20 s"
    assert lines[5].startswith("an error message") and lines[5].endswith("in a log file") and len(lines) == 6


def test_a_countdown_gives_position_and_time_left() -> None:
    now = [100.0]
    countdown = Countdown(4, clock=lambda: now[0])
    assert countdown(0) == "1/4"  # nothing to estimate from yet
    now[0] += 10
    assert countdown(1) == "2/4, about 30 s left"
    now[0] += 50
    assert countdown(3) == "4/4, about 20 s left"


def test_encode_output_in_a_log_has_progress_lines_and_unwrapped_errors(light_export: Path, tmp_path: Path) -> None:
    folder, store = image_folder(tmp_path, 3, 24), tmp_path / "store"
    (folder / ("broken_" + "x" * 90 + ".png")).write_bytes(b"not a png")
    result = CliRunner().invoke(
        encode_cli.app, ["encode", str(folder), "--model", str(light_export), "--out", str(store), "--threads", "1"]
    )
    assert result.exit_code == encode_cli.EXIT_FAILURES
    assert "encoding: started (4 to do)" in result.stderr and "encoding: done 4/4 in" in result.stderr
    failure = next(line for line in result.stderr.splitlines() if line.startswith("failed broken_"))
    assert "cannot identify image file" in failure
    assert len(failure) > 120  # one line, not wrapped at 80 columns
