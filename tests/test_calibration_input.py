"""Unreadable calibration images given to ``interformer-quantize`` are all named, each with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interformer_edge.quantize.calibration import CalibrationError, read_calibration_images


def test_unreadable_calibration_images_are_named_with_the_reason(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"photo{index}.jpg").write_bytes(np.random.default_rng(index).bytes(300))
    with pytest.raises(CalibrationError) as err:
        read_calibration_images(tmp_path, [])
    message = str(err.value)
    assert "\n" not in message and "5 unreadable" in message
    for index in range(5):
        assert f"photo{index}.jpg: cannot identify image file" in message
