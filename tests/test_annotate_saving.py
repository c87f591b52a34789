"""Saving annotations: revisions (a stale tab's save is refused, not silently merged away), all-or-nothing
writes (a full disk changes no file), and the journal that finishes a save a crash interrupted.

The store is tested on small hand-made masks; the annotator (the page's ``/api/open`` and ``/api/save``)
with the bundled model on a copied photo. Saved files are read back with ``annotation_decoders`` (written
from the COCO format, not from the package).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from annotation_decoders import coco_to_mask
from PIL import Image

from interformer_edge.annotate import saving
from interformer_edge.annotate.errors import STALE_REVISION, RequestError
from interformer_edge.annotate.saving import AnnotationStore, ObjectMask

IMAGE = "a.png"
SIZE = (6, 8)


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == saving.JOURNAL_NAME)


def assert_consistent(out: Path) -> dict:
    """The PNGs of every image are exactly its annotations in the JSON, mask for mask; returns the JSON."""
    doc = json.loads((out / "annotations.json").read_text())
    labels = {c["id"]: c["name"] for c in doc["categories"]}
    for image in doc["images"]:
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        folder = out / "masks" / image["file_name"]
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        assert [p.name for p in pngs] == [f"{k:02d}_{labels[a['category_id']]}.png" for k, a in enumerate(anns)]
        for png, ann in zip(pngs, anns, strict=True):
            assert np.array_equal(np.asarray(Image.open(png)) > 127, coco_to_mask(ann["segmentation"]))
    return doc


@pytest.fixture
def saved_twice(tmp_path: Path) -> tuple[AnnotationStore, Path]:
    """A store whose image was saved once with a cat and a dog (revision 1)."""
    out = tmp_path / "out"
    store = AnnotationStore(out)
    assert store.revision(IMAGE) == 0
    result = store.save(IMAGE, SIZE, [ObjectMask("cat", box(0, 0, 3, 3)), ObjectMask("dog", box(3, 4, 6, 8))], 0)
    assert result.revision == 1
    return store, out


# ------------------------------------------------------------------------------------ revisions


def test_a_stale_revision_is_refused_and_writes_nothing(saved_twice: tuple[AnnotationStore, Path]) -> None:
    store, out = saved_twice
    before = snapshot(out)
    with pytest.raises(RequestError) as refused:
        store.save(IMAGE, SIZE, [ObjectMask("cow", box(1, 1, 5, 5))], 0)  # a second tab that opened at 0
    assert refused.value.status == 409 and refused.value.code == STALE_REVISION
    assert "someone else" in str(refused.value) and "\n" not in str(refused.value)
    assert snapshot(out) == before
    assert [o.label for o in store.objects(IMAGE)] == ["cat", "dog"]

    # the same tab after reloading (revision 1): keeps the saved cat, adds its cow; then saves again at 2
    assert store.save(IMAGE, SIZE, [store.objects(IMAGE)[0], ObjectMask("cow", box(1, 1, 5, 5))], 1).revision == 2
    assert store.save(IMAGE, SIZE, [ObjectMask("cow", box(1, 1, 5, 5))], 2).revision == 3
    doc = assert_consistent(out)
    assert doc["images"][0]["interformer_revision"] == 3
    assert AnnotationStore(out).load(IMAGE).revision == 3  # the revision survives a restart
    assert sorted(p.name for p in (out / "masks" / IMAGE).iterdir()) == ["00_cow.png"]


def test_images_never_saved_and_files_from_before_revisions_are_at_revision_0(tmp_path: Path) -> None:
    out = tmp_path / "out"
    AnnotationStore(out).save(IMAGE, SIZE, [ObjectMask("cat", box(0, 0, 2, 2))], 0)
    doc = json.loads((out / "annotations.json").read_text())
    del doc["images"][0]["interformer_revision"]  # as written by the tool before it kept revisions
    (out / "annotations.json").write_text(json.dumps(doc))
    store = AnnotationStore(out)
    assert store.load(IMAGE).revision == 0 and store.revision("other.png") == 0
    assert store.save(IMAGE, SIZE, [], 0).revision == 1


# ------------------------------------------------------------------------------------ a full disk


@pytest.mark.parametrize("fail_on", ["01_dog.png", "annotations.json", ".annotations.journal"])
def test_a_full_disk_changes_no_file(
    saved_twice: tuple[AnnotationStore, Path], monkeypatch: pytest.MonkeyPatch, fail_on: str
) -> None:
    """The write of the second PNG, of the JSON or of the journal fails half-way: everything stays as it was."""
    store, out = saved_twice
    before = snapshot(out)
    real_write = saving._write_file

    def write(path: Path, data: bytes) -> None:
        if path.name.startswith(f".{fail_on}."):
            path.write_bytes(data[: len(data) // 2])  # half of it reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(saving, "_write_file", write)
    new = [ObjectMask("cat", box(2, 2, 6, 6)), ObjectMask("dog", box(0, 0, 1, 8)), ObjectMask("cow", box(0, 7, 6, 8))]
    with pytest.raises(OSError) as failed:
        store.save(IMAGE, SIZE, new, 1)
    assert failed.value.errno == errno.ENOSPC
    assert snapshot(out) == before
    assert temporaries(out) == []
    assert store.revision(IMAGE) == 1 and [o.label for o in store.objects(IMAGE)] == ["cat", "dog"]

    monkeypatch.setattr(saving, "_write_file", real_write)  # space again: the same save goes through
    assert store.save(IMAGE, SIZE, new, 1).revision == 2
    assert len(assert_consistent(out)["annotations"]) == 3


def test_a_first_save_failing_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    store = AnnotationStore(out)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saving, "_write_file", full)
    with pytest.raises(OSError):
        store.save("sub/b.png", SIZE, [ObjectMask("cat", box(0, 0, 2, 2))], 0)
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------ crashes


class Crash(BaseException):
    """The process dies here (a BaseException: nothing in the store may catch it)."""


def crash_after(monkeypatch: pytest.MonkeyPatch, renames: int) -> None:
    real_rename = saving._rename
    done: list[Path] = []

    def rename(source: Path, target: Path) -> None:
        if len(done) == renames:
            raise Crash
        real_rename(source, target)
        done.append(target)

    monkeypatch.setattr(saving, "_rename", rename)


@pytest.mark.parametrize("renames_done", [0, 1])
def test_a_save_interrupted_between_renames_is_finished_when_the_folder_is_opened(
    saved_twice: tuple[AnnotationStore, Path], monkeypatch: pytest.MonkeyPatch, renames_done: int
) -> None:
    store, out = saved_twice
    new_cat = box(2, 2, 6, 6)
    crash_after(monkeypatch, renames_done)  # commit renames: 00_cat.png, then annotations.json
    with pytest.raises(Crash):
        store.save(IMAGE, SIZE, [ObjectMask("cat", new_cat)], 1)
    assert (out / saving.JOURNAL_NAME).is_file()
    if renames_done:  # the state the journal is for: the new PNG beside the old JSON
        saved_cat = np.asarray(Image.open(out / "masks" / IMAGE / "00_cat.png")) > 127
        assert np.array_equal(saved_cat, new_cat)
        assert json.loads((out / "annotations.json").read_text())["images"][0]["interformer_revision"] == 1

    if renames_done == 0:  # the restart crashes too, half-way through finishing the journal
        crash_after(monkeypatch, 1)
        with pytest.raises(Crash):
            AnnotationStore(out)
        assert (out / saving.JOURNAL_NAME).is_file()
    monkeypatch.undo()
    reopened = AnnotationStore(out)
    doc = assert_consistent(out)
    assert doc["images"][0]["interformer_revision"] == 2 and reopened.revision(IMAGE) == 2
    assert [o.label for o in reopened.objects(IMAGE)] == ["cat"]
    assert np.array_equal(reopened.objects(IMAGE)[0].mask, new_cat)
    assert sorted(p.name for p in (out / "masks" / IMAGE).iterdir()) == ["00_cat.png"]  # the dog's PNG went
    assert temporaries(out) == []


def test_temporaries_of_a_save_that_crashed_before_deciding_are_removed(
    saved_twice: tuple[AnnotationStore, Path],
) -> None:
    _, out = saved_twice
    (out / "masks" / IMAGE / ".02_cow.png.k3j_x9.tmp").write_bytes(b"half a png")
    (out / ".annotations.json.a8b7c6.tmp").write_text("{half")
    (out / "notes.tmp").write_text("the user's")  # not ours: stays
    before = {k: v for k, v in snapshot(out).items() if ".tmp" not in k}
    AnnotationStore(out)
    assert snapshot(out) == {**before, "notes.tmp": b"the user's"}
    assert_consistent(out)


# ------------------------------------------------------------------------------------ the annotator


@pytest.mark.bundled_model
def test_the_annotator_refuses_a_stale_tab_and_keeps_both_tabs_objects(
    default_export: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient  # the web stack at use, not at collection (the lean run lacks it)

    from interformer_edge.annotate.server import build_app
    from interformer_edge.annotate.service import Annotator, Settings
    from interformer_edge.assets import PHOTOS_DIR

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "chelsea.jpg").write_bytes((PHOTOS_DIR / "chelsea.jpg").read_bytes())
    out = tmp_path / "out"
    annotator = Annotator(Settings(images=photos, model=default_export[0], out=out, threads=2, prefetch=0))
    try:

        def clicked(label: str, x: int, y: int) -> str:
            session = annotator.new_session("chelsea.jpg", label)["session"]
            annotator.click(session, x, y, True)
            return session

        assert annotator.open_image("chelsea.jpg")["revision"] == 0  # both tabs open the new image
        cat, rug = clicked("cat", 220, 150), clicked("rug", 20, 280)
        assert annotator.save("chelsea.jpg", [{"session": cat, "label": "cat"}], 0)["revision"] == 1

        before = snapshot(out)
        with pytest.raises(RequestError) as refused:  # the second tab, still at revision 0
            annotator.save("chelsea.jpg", [{"session": rug, "label": "rug"}], 0)
        assert (refused.value.status, refused.value.code) == (409, STALE_REVISION)
        for bad in (None, "1", True, -1, 1.0):  # the page always sends the revision it opened
            with pytest.raises(RequestError) as malformed:
                annotator.save("chelsea.jpg", [{"session": rug, "label": "rug"}], bad)
            assert malformed.value.status == 400 and "revision" in str(malformed.value)
        client = TestClient(build_app(annotator), base_url="http://127.0.0.1:8000")  # no lifespan: no close
        stale = client.post("/api/save", json={"image": "chelsea.jpg", "objects": [], "revision": 0})
        assert stale.status_code == 409 and stale.json()["code"] == "stale_revision"
        assert client.post("/api/save", json={"image": "chelsea.jpg", "objects": []}).status_code == 400
        assert snapshot(out) == before

        reopened = annotator.open_image("chelsea.jpg")  # the page's reload after the 409
        assert reopened["revision"] == 1 and [s["label"] for s in reopened["saved"]] == ["cat"]
        both = [{"saved": 0, "label": "cat"}, {"session": rug, "label": "rug"}]

        def full(path: Path, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(saving, "_write_file", full)
        with pytest.raises(RequestError) as no_space:
            annotator.save("chelsea.jpg", both, 1)
        assert no_space.value.status == 507 and "No space left" in str(no_space.value)
        assert snapshot(out) == before
        monkeypatch.undo()

        saved = annotator.save("chelsea.jpg", both, 1)
        assert (saved["revision"], saved["objects"]) == (2, 2)
        assert annotator.open_image("chelsea.jpg")["revision"] == 2
    finally:
        annotator.close()
    doc = assert_consistent(out)
    assert [c["name"] for c in doc["categories"]] == ["cat", "rug"] and len(doc["annotations"]) == 2


def test_polygon_segmentations_are_written_and_read_back_as_the_same_masks(tmp_path: Path) -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:30, 10:50] = True
    mask[12:20, 20:30] = False  # a hole
    mask[33:38, 2:6] = True  # a second part
    store = AnnotationStore(tmp_path / "out", segmentation="polygon")
    store.save("a.png", (40, 60), [ObjectMask("cat", mask, ((12, 8, True),))], 0)
    document = json.loads((tmp_path / "out" / "annotations.json").read_text())
    segmentation = document["annotations"][0]["segmentation"]
    assert isinstance(segmentation, list) and len(segmentation) == 2  # one polygon per part, the hole joined in
    assert all(len(polygon) % 2 == 0 and len(polygon) >= 8 for polygon in segmentation)
    reopened = AnnotationStore(tmp_path / "out")  # read back whatever the file holds
    assert np.array_equal(reopened.objects("a.png")[0].mask, mask)
    with pytest.raises(RequestError, match="segmentation"):
        AnnotationStore(tmp_path / "other", segmentation="svg")
