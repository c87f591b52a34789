"""Big photos and the encoder's memory: the estimate covers measured peaks, a photo is bounded by max_side by
default, and one too big for the free memory is refused before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interformer_edge.core.spec import DEFAULT_MAX_SIDE
from interformer_edge.runtime import memory
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.errors import MemoryBudgetError
from interformer_edge.runtime.session import ClickSession

MiB = 2**20

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
