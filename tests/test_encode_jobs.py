"""Encoding jobs sharing a store: an image claimed by a live process is left to it, a stale claim is taken
over, a crash on one image is one line and the run goes on, and two runs encode every image once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from encode_helpers import encode_command, image_folder, summary_rows

from interformer_edge.runtime import EncodeSettings, RuntimeSettings, encode_jobs
from interformer_edge.runtime.features import load_features
from interformer_edge.runtime.store import lock_path


def test_a_claimed_image_is_left_to_its_owner_and_a_stale_claim_is_taken_over(
    light_export: Path, tmp_path: Path
) -> None:
    folder, store = image_folder(tmp_path, 2, 40), tmp_path / "store"
    jobs = encode_jobs.list_jobs(folder, store, recursive=False)
    encode_jobs.init_worker(EncodeSettings(light_export, RuntimeSettings("auto", 1, "f32")), in_pool=False)
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
    encode_jobs.init_worker(EncodeSettings(light_export, RuntimeSettings("auto", 1, "f32")), in_pool=False)
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
