"""Bad checkpoint files given to ``interformer-export``: random bytes, a truncated file, tensors of the wrong
shape; each is refused with one sentence that says what is wrong."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from conftest import small_checkpoint
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="the checkpoints and the exporter need torch (the workstation extra)")
# Imported once torch is known to be there (the exporter needs it); a broken exporter still fails here.
export_cli = importlib.import_module("interformer_edge.export.cli")


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_checkpoint_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", "light")


@pytest.mark.parametrize("unsafe", [False, True], ids=["safe", "unsafe-load"])
def test_random_bytes_are_not_called_a_checkpoint_with_objects(tmp_path: Path, unsafe: bool) -> None:
    bad = tmp_path / "random.pth"
    bad.write_bytes(np.random.default_rng(3).bytes(5000))
    result = CliRunner().invoke(
        export_cli.app, ["-c", str(bad), "-o", str(tmp_path / "out"), *(["--unsafe-load"] if unsafe else [])]
    )
    assert result.exit_code == export_cli.EXIT_BAD_INPUT
    message = result.stderr.strip().splitlines()[-1]
    assert "is not a PyTorch checkpoint" in message and "unsafe" not in message and "load key" not in message
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_message_is_a_whole_sentence(small_checkpoint_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth"
    data = small_checkpoint_file.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    result = CliRunner().invoke(export_cli.app, ["-c", str(cut), "-o", str(tmp_path / "out")])
    assert result.exit_code == export_cli.EXIT_BAD_INPUT
    message = one_line_error(result)
    assert "truncated or damaged" in message and message.endswith("copy or download it again")
    assert "there is a high" not in message


def test_wrong_shape_names_the_architecture_not_the_file(small_checkpoint_file: Path, tmp_path: Path) -> None:
    state = torch.load(small_checkpoint_file, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("decode_head.conv_seg.weight"))  # "module." prefixed
    state["state_dict"][key] = torch.zeros(3, *state["state_dict"][key].shape[1:])
    wrong = tmp_path / "wrongshape.pth"
    torch.save(state, wrong)
    result = CliRunner().invoke(export_cli.app, ["-c", str(wrong), "-o", str(tmp_path / "out")])
    message = one_line_error(result)
    assert "does not fit the inferred (from the checkpoint's tensor shapes) architecture" in message
    assert "'wrongshape'" not in message and "decode_head.conv_seg" in message
    result = CliRunner().invoke(export_cli.app, ["-c", str(wrong), "--arch", "light", "-o", str(tmp_path / "out")])
    assert "does not fit the preset 'light' architecture" in one_line_error(result)
