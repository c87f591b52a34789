"""Official checkpoints load strictly; anything else fails with one clear error."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pytest
import torch

from interformer_edge.models import (
    CheckpointError,
    InterFormer,
    config_from_state_dict,
    load_interformer,
    preset,
)
from interformer_edge.models.checkpoint import clean_state_dict, load_into
from interformer_edge.models.vit import canonical_relative_position_index

DATA = Path(__file__).parent / "data"


def official_keys(arch: str) -> list[tuple[str, tuple[int, ...], str]]:
    with gzip.open(DATA / f"official_{arch}_keys.json.gz", "rt") as f:
        return [(k, tuple(s), d) for k, s, d in json.load(f)["keys"]]


def official_layout_checkpoint(arch: str, path: Path, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Write an mmcv-style checkpoint with every official key; each tensor holds a distinct constant."""
    state = {}
    for i, (key, shape, dtype) in enumerate(official_keys(arch)):
        if key.endswith("relative_position_index"):
            state[key] = canonical_relative_position_index(32)
        elif dtype == "int64":
            state[key] = torch.tensor(7, dtype=torch.int64).reshape(shape)
        else:
            state[key] = torch.full(shape, float(i % 997) / 997.0)
    torch.save(
        {
            "meta": {"mmcv_version": "1.6.0", "iter": 320000},
            "state_dict": {prefix + k: v for k, v in state.items()},
            "optimizer": {"state": {}, "param_groups": []},
        },
        path,
    )
    return state


@pytest.mark.parametrize("arch", ["light", "tiny"])
def test_full_official_key_set_loads_strictly_into_preset(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every official key, in the mmcv layout (``module.`` prefix, auxiliary head), fits the preset strictly.

    Uninitialised tensors in memory and no random initialisation: writing, reading and initialising a
    1.2 GB ViT-L took most of a minute; reading real values from a file is tested with a small model below."""
    for name in ("trunc_normal_", "normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "constant_"):
        monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    raw = {
        "meta": {"mmcv_version": "1.6.0"},
        "optimizer": {"state": {}},
        "state_dict": {
            "module." + key: canonical_relative_position_index(32)
            if key.endswith("relative_position_index")
            else torch.empty(shape, dtype=dtypes[dtype])
            for key, shape, dtype in official_keys(arch)
        },
    }
    state = clean_state_dict(raw)
    assert not [k for k in state if k.startswith(("module.", "auxiliary_head."))]
    assert [k for k, _, _ in official_keys(arch) if k.startswith("auxiliary_head.")]  # there were some to drop
    model = InterFormer(preset(arch))
    load_into(model, state)  # raises, naming every missing, unexpected or mis-shaped key
    assert set(model.state_dict()) == set(state)
    broken = dict(state)
    broken.pop(next(k for k in broken if k.startswith("decode_head.")))
    with pytest.raises(CheckpointError, match="1 missing: decode_head"):
        load_into(model, broken)


@pytest.mark.parametrize("arch", ["light", "tiny"])
def test_architecture_inferred_from_official_shapes_equals_preset(arch: str) -> None:
    shapes = {
        k: torch.empty(0).new_empty(s) if len(s) < 2 else torch.empty(s, device="meta")
        for k, s, _ in official_keys(arch)
    }
    inferred = config_from_state_dict(shapes, name=arch)
    assert inferred == preset(arch)


def small_refine_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    from interformer_edge.models import InterFormerConfig, build_interformer

    cfg = InterFormerConfig(name="small", embed_dims=64, depth=1, num_heads=1, neck_depths=(2, 1, 2, 1))
    state = build_interformer(cfg).state_dict()
    path = tmp_path / "small.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    return path, state


def test_small_checkpoint_round_trips_with_inferred_architecture(tmp_path: Path) -> None:
    path, state = small_refine_checkpoint(tmp_path)
    model = load_interformer(path)
    assert model.cfg.embed_dims == 64 and model.cfg.depth == 1
    assert model.cfg.neck_depths == (2, 1, 2, 1) and model.cfg.neck_refine_start == (1, 1, 2, 1)
    assert model.cfg.has_refine
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_relative_position_index_may_be_omitted_but_not_wrong(tmp_path: Path) -> None:
    path, state = small_refine_checkpoint(tmp_path)
    key = "backbone.layers.0.attn.relative_position_index"
    trimmed = {k: v for k, v in state.items() if k != key}
    torch.save(trimmed, path)
    load_interformer(path)
    broken = dict(state)
    broken[key] = state[key].flip(0)
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="relative position index"):
        load_interformer(path)


def test_missing_unexpected_and_mismatched_keys_are_named(tmp_path: Path) -> None:
    path, state = small_refine_checkpoint(tmp_path)
    broken = dict(state)
    del broken["neck.norm0.weight"]
    broken["neck.extra.weight"] = torch.zeros(3)
    broken["decode_head.conv_seg.weight"] = torch.zeros(3, 64, 1, 1)
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        load_interformer(path, cfg=load_interformer_cfg(state))
    message = str(err.value)
    assert "neck.norm0.weight" in message
    assert "neck.extra.weight" in message
    assert "decode_head.conv_seg.weight (3, 64, 1, 1)" in message
    assert "\n" not in message


def load_interformer_cfg(state: dict[str, torch.Tensor]):
    return config_from_state_dict(state, name="small")


def test_preset_mismatch_is_reported(tmp_path: Path) -> None:
    path, _ = small_refine_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit the preset 'light' architecture"):
        load_interformer(path, cfg=preset("light"))


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint", b"PK\x03\x04truncated zip"],
    ids=["empty", "text", "truncated-zip"],
)
def test_unreadable_files_give_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_interformer(path)
    assert "\n" not in str(err.value)


def test_truncated_real_checkpoint_gives_one_line(tmp_path: Path) -> None:
    path, _ = small_refine_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"is a truncated or damaged PyTorch checkpoint .*: copy or download it "
        r"again$",
    ):
        load_interformer(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_interformer(tmp_path / "nope.pth")


def test_not_an_interformer_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="not an InterFormer checkpoint"):
        load_interformer(path)


class _Custom:
    pass


def test_pickled_objects_need_explicit_permission(tmp_path: Path) -> None:
    path, state = small_refine_checkpoint(tmp_path)
    torch.save({"meta": {"obj": _Custom()}, "state_dict": state}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="unsafe-load"):
        load_interformer(path)
    with pytest.warns(UserWarning, match="full unpickling"):
        model = load_interformer(path, allow_pickle=True)
    assert model.cfg.embed_dims == 64
