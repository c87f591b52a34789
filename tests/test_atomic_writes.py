"""Files the tools write: created with the umask's mode like any other file, and all-or-nothing (a writer
that fails leaves the old file and no temporary one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interformer_edge.core.atomic import atomic_target, write_atomic
from interformer_edge.core.manifest import load_manifest, write_manifest
from interformer_edge.runtime.features import load_features, save_features


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
