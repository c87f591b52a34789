"""The README's runnable snippets run as written.

A code block is runnable when the line before its fence is ``<!-- readme-test: run -->``. Each runs in
a fresh folder that holds what the README assumes after the quick start: ``interformer_export`` (here
the small test export, same layout) and the repository's ``assets``; shell blocks run with this
environment's commands on the PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from interformer_edge.assets import ASSETS_DIR

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- readme-test: run -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```(python|bash)\n(.*?)\n```", re.DOTALL)


def runnable_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_marks_its_runnable_snippets() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = runnable_blocks()
    assert text.count(MARKER) == len(blocks) >= 2, "a marker is not followed by a python or bash block"
    assert {language for language, _ in blocks} == {"python", "bash"}
    assert "artifacts/default" not in text, "one export path everywhere: interformer_export"


@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_snippet_runs_as_written(index: int, light_export: Path, tmp_path: Path) -> None:
    language, code = runnable_blocks()[index]
    (tmp_path / "interformer_export").symlink_to(light_export, target_is_directory=True)
    (tmp_path / "assets").symlink_to(ASSETS_DIR, target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README {language} snippet {index} failed:\n{code}\n{result.stderr[-2000:]}"
