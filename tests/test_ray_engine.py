"""``interformer-encode encode --engine ray``: a local Ray instance started here, the same store files as the
local engine, resume, bad images, a crashing actor, an unreachable cluster."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from encode_checks import assert_same_store_files, help_rows
from PIL import Image
from typer.testing import CliRunner

from interformer_edge.core.cli_kit import EXIT_BAD_INPUT, EXIT_FAILURES
from interformer_edge.runtime.cli import app
from interformer_edge.runtime.encode_image import EncodeSettings, Job, Outcome
from interformer_edge.runtime.export import RuntimeSettings
from interformer_edge.runtime.features import load_features
from interformer_edge.runtime.image_sources import list_jobs

ray = pytest.importorskip("ray")  # the [ray] extra: installed by scripts/setup.sh; absent from the lean install

IMAGES = 24
RAY_PROCESSES = ("raylet", "gcs_server")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A two-CPU Ray instance on the loopback interface for this module; none of its processes may outlive it."""
    # "local": a new instance, even if this machine runs a cluster started with `ray start`.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        left = [p.name() for p in psutil.Process().children(recursive=True) if p.name() in RAY_PROCESSES]
        assert not left, f"Ray left processes behind: {left}"


def make_images(folder: Path, count: int = IMAGES, seed: int = 0) -> Path:
    """``count`` small RGB PNGs of a few sizes, plus one corrupt JPEG (``broken.jpg``)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index in range(count):
        shape = (24 + index % 3 * 8, 32 + index % 4 * 8, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{index:02d}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    return folder


def encode(source: Path, export: Path, store: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["encode", str(source), "--model", str(export), "--out", str(store), "--threads", "1", *extra]
    )
    return result.exit_code, result.output


def summary(output: str) -> dict[str, str]:
    """The rows of the summary table (``│ encoded │ 24 │``)."""
    return {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in output.splitlines() if line.count("│") == 3
    }


def counts(output: str) -> tuple[int, int, int]:
    rows = summary(output)
    return int(rows["encoded"]), int(rows["skipped (up to date)"]), int(rows["failed"])


def test_unreachable_cluster_is_one_line_and_nothing_written(light_export: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port on the loopback that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = make_images(tmp_path / "photos", count=2)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        code, output = encode(folder, light_export, tmp_path / "store", "--engine", "ray", "--address", address)
        assert code == EXIT_BAD_INPUT and "Traceback" not in output, output
        assert (
            output.strip().splitlines()[-1]
            == f"interformer-encode: error: cannot reach a Ray cluster at {address}: Connection refused"
        )
    with socket.socket() as listening:  # Ray Client is refused before connecting, with what to do instead
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"ray://127.0.0.1:{listening.getsockname()[1]}"
        code, output = encode(folder, light_export, tmp_path / "store", "--engine", "ray", "--address", address)
    assert code == EXIT_BAD_INPUT and "Ray Data does not run through Ray Client" in output, output
    assert not (tmp_path / "store").exists()


def test_without_ray_the_engine_names_the_extra_and_the_local_engine_works(
    light_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" fails, as in the lean install
    folder = make_images(tmp_path / "photos", count=2)
    code, output = encode(folder, light_export, tmp_path / "store", "--engine", "ray")
    assert code == EXIT_BAD_INPUT and "Traceback" not in output, output
    assert (
        output.strip().splitlines()[-1]
        == "interformer-encode: error: the Ray engine needs the [ray] extra: pip install "
        '"interformer-edge[ray]"'
    )
    code, output = encode(folder, light_export, tmp_path / "store")
    assert code == EXIT_FAILURES and counts(output) == (2, 0, 1), output
    image_list = tmp_path / "photos.txt"
    image_list.write_text("photos/img00.png\n")
    code, output = encode(image_list, light_export, tmp_path / "store")
    assert code == EXIT_BAD_INPUT and "is an image list: lists are read by --engine ray" in output, output


def test_ray_engine_survives_a_crashing_actor_resumes_and_writes_the_local_engines_files(
    light_export: Path, tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interformer_edge.runtime import ray_cluster, ray_engine

    folder = make_images(tmp_path / "photos")
    local, store = tmp_path / "local", tmp_path / "store"
    code, output = encode(folder, light_export, local)
    assert code == EXIT_FAILURES and counts(output) == (IMAGES, 0, 1), output

    # 1. Two actors, one of which dies halfway through writing one image's store file.
    poison = "img05.png"

    class DiesWhileWriting(ray_engine.EncoderActor):
        def encode_row(self, job: Job, rgb: np.ndarray, sha256: str) -> Outcome:
            if job.name == poison:

                def write_half(file: object, **arrays: np.ndarray) -> None:
                    file.write(b"PK\x03\x04 half a zip")
                    file.flush()
                    os._exit(1)

                np.savez = write_half  # in this actor's process only, which dies in it
            return super().encode_row(job, rgb, sha256)

    monkeypatch.setattr(ray_engine, "ACTOR_TASK_RETRIES", 0)  # a retry would crash again: keep the test short
    assert not ray_cluster.connect(None).owned  # the module's Ray instance, kept as it is
    jobs = list_jobs(folder, store, recursive=False)
    settings = EncodeSettings(light_export, RuntimeSettings(threads=1))
    outcomes = [
        outcome
        for batch in ray_engine.encode_on_ray(jobs, settings, actors=2, batch_size=4, actor_class=DiesWhileWriting)
        for outcome in batch
    ]
    assert sorted(o.name for o in outcomes) == sorted(job.name for job in jobs)  # one outcome per image
    lost = {o.name for o in outcomes if o.status == "failed" and "Ray actor died" in o.message}
    encoded = {o.name for o in outcomes if o.status == "encoded"}
    assert poison in lost and encoded and encoded | lost | {"broken.jpg"} == {job.name for job in jobs}
    assert all(o.worker.startswith("actor ") for o in outcomes if o.status == "encoded")
    stored = {p.name.removesuffix(".npz") for p in store.glob("*.npz")}
    assert poison not in stored and stored >= encoded  # images of a lost batch written before the crash stay
    for path in store.glob("*.npz"):  # and every store file is complete
        load_features(path)

    # 2. The command resumes from an image list: the same images and names, a new one, a missing one.
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "new.png")
    done = {p.name: p.stat().st_mtime_ns for p in store.glob("*.npz")}
    image_list = tmp_path / "images.txt"
    entries = [f"photos/{p.name}" for p in sorted(folder.iterdir())]
    image_list.write_text("\n".join(["# the photos", *entries, str(folder / "gone.png"), ""]))
    code, output = encode(image_list, light_export, store, "--engine", "ray", "--actors", "2", "--batch-size", "4")
    assert code == EXIT_FAILURES, output
    assert counts(output) == (IMAGES + 1 - len(stored), len(stored), 2), output
    assert "failed: broken.jpg: cannot read image" in output and "failed: gone.png: image not found" in output
    assert {name: store.joinpath(name).stat().st_mtime_ns for name in done} == done, "stored images encoded again"
    assert load_features(store / "new.png.npz").meta.original_size == (30, 30)

    # 3. Every image's store file, whichever run and actor wrote it, is the local engine's.
    names = sorted(p.name for p in local.glob("*.npz"))
    assert len(names) == IMAGES and sorted(p.name for p in store.glob("*.npz")) == sorted([*names, "new.png.npz"])
    assert_same_store_files(store, local, names)


def test_image_lists_name_images_from_their_common_folder_and_uris_are_read(tmp_path: Path) -> None:
    from interformer_edge.core.image_io import ImageReadError
    from interformer_edge.runtime.image_sources import list_file_jobs, read_image_bytes

    for sub in ("a", "b"):
        (tmp_path / "photos" / sub).mkdir(parents=True)
    cat, dog = tmp_path / "photos" / "a" / "cat.png", tmp_path / "photos" / "b" / "dog.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(cat)
    Image.fromarray(np.ones((4, 4, 3), np.uint8)).save(dog)
    image_list = tmp_path / "list.txt"
    image_list.write_text(f"# photos\nphotos/a/cat.png\n\n{dog.as_uri()}\nphotos/a/../a/cat.png\n")
    jobs = list_file_jobs(image_list, tmp_path / "store")
    assert [(job.name, job.image, job.target) for job in jobs] == [
        ("a/cat.png", cat, tmp_path / "store" / "a" / "cat.png.npz"),
        ("b/dog.png", dog, tmp_path / "store" / "b" / "dog.png.npz"),
    ]
    image_list.write_text("s3://bucket/set/x.jpg\ns3://bucket/set/y/z.jpg\n")
    assert [(job.name, job.image) for job in list_file_jobs(image_list, tmp_path)] == [
        ("x.jpg", "s3://bucket/set/x.jpg"),
        ("y/z.jpg", "s3://bucket/set/y/z.jpg"),
    ]

    assert read_image_bytes(dog.as_uri()) == dog.read_bytes()  # a URI string goes through pyarrow's filesystems
    with pytest.raises(ImageReadError, match=r"cannot read file://.*gone\.png"):
        read_image_bytes((tmp_path / "gone.png").as_uri())


def test_the_engine_module_imports_neither_ray_nor_torch() -> None:
    modules = ("cli", "encode_run", "ray_cluster", "ray_engine", "image_sources")
    code = (
        f"import sys; {'; '.join(f'import interformer_edge.runtime.{name}' for name in modules)}; "
        "bad = [m for m in ('ray', 'torch', 'interformer_edge.models') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_explains_the_ray_flags() -> None:
    result = CliRunner().invoke(app, ["encode", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    rows = help_rows(result.output)
    for flag, words in {
        "--engine": "local (processes",
        "--address": "the cluster to use",
        "--actors": "Encoders running",
        "--batch-size": "Images handed",
    }.items():
        assert words in rows.get(flag, ""), f"{flag}: {rows.get(flag)}"
