"""Host side of the harness: the exports made with torch (cached by source hash) and copying into the root."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import in_root
from harness_steps import CommandError, disk_usage, log, run

SOURCE_DIRS = ("core", "models", "export", "runtime", "package")  # what the exports depend on
TOP_LEVEL_EXCLUDES = {"artifacts", "runs", "build", "dist"}  # when the repository is not a git work tree


def python_sources(repo: Path) -> list[Path]:
    """The .py files under SOURCE_DIRS, in a stable order (symlinked folders are not followed)."""
    found = []
    for top in SOURCE_DIRS:
        for folder, _dirs, files in os.walk(repo / top):
            found += [Path(folder, name) for name in files if name.endswith(".py")]
    return sorted(found, key=lambda path: str(path.relative_to(repo)))


def cache_key(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:16]


class HostExports:
    """Exports the emulated root cannot make (no torch there), built with a host python that has torch.

    The python: ``override`` (ARM64_HOST_PYTHON), else the driver's own interpreter if it imports
    torch, else the repository's .venv/bin/python.
    """

    def __init__(self, repo: Path, root: str, log_dir: Path, nice: str, override: str) -> None:
        self.repo, self.log_dir, self.nice, self.override = repo, log_dir, nice, override
        self.test_cache = Path(f"{root}.test-exports")
        self.default_cache = Path(f"{root}.default-export")
        self._python: str | None = None

    def python(self, hint: str) -> str:
        if self._python:
            return self._python
        candidates = [self.override] if self.override else [sys.executable, str(self.repo / ".venv/bin/python")]
        for candidate in candidates:
            if (
                os.access(candidate, os.X_OK)
                and subprocess.run([candidate, "-c", "import torch"], capture_output=True, check=False).returncode == 0
            ):
                self._python = candidate
                return candidate
        log(f"no host python with torch ({' '.join(candidates)}); set ARM64_HOST_PYTHON")
        log(hint)
        raise CommandError(1)

    def _build(self, command: list[str], log_name: str) -> None:
        log_file = self.log_dir / log_name
        run(["nice", "-n", self.nice, *command], log_file=log_file, cwd="/tmp", tail=15)
        sys.stdout.write(log_file.read_text(encoding="utf-8", errors="replace"))

    def build_test_exports(self) -> None:
        """light/ and tiny/ for the runtime tests' fixtures (make_test_exports.py), cached in ROOT.test-exports."""
        python = self.python("use --test-exports DIR|none instead")
        inputs = [self.repo / "tests/conftest.py", self.repo / "scripts/arm64/make_test_exports.py"]
        key = cache_key(path.read_bytes() for path in [*inputs, *python_sources(self.repo)])
        stamp = self.test_cache / ".key"
        if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == key:
            log(f"reusing test exports in {self.test_cache} (source hash {key})")
            return
        log(f"building test exports with {python} (light, tiny) into {self.test_cache}")
        shutil.rmtree(self.test_cache, ignore_errors=True)
        script = self.repo / "scripts/arm64/make_test_exports.py"
        self._build([python, str(script), str(self.test_cache)], "test-exports.log")
        stamp.write_text(key + "\n", encoding="utf-8")

    def build_default_export(self) -> None:
        """The bundled default model exported with interformer-export, cached in ROOT.default-export."""
        python = self.python("use --artifacts DIR|none instead")
        checkpoints = sorted(self.repo.glob("assets/*.pth"))
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(self.repo)}\n" for p in checkpoints]
        key = cache_key([*(line.encode() for line in lines), *(p.read_bytes() for p in python_sources(self.repo))])
        stamp = Path(f"{self.default_cache}.key")
        cached = (self.default_cache / "manifest.json").is_file() and stamp.is_file()
        if cached and stamp.read_text(encoding="utf-8").strip() == key:
            log(f"reusing the default export in {self.default_cache} (source hash {key})")
            return
        log(f"exporting the bundled default model with {python} into {self.default_cache}")
        shutil.rmtree(self.default_cache, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        self._build(
            [python, "-m", "interformer_edge.export.cli", "-o", str(self.default_cache), "-q"], "default-export.log"
        )
        stamp.write_text(key + "\n", encoding="utf-8")


class RootCopier:
    """Copies what the in-root steps need into the root: config files, the repository, exports."""

    def __init__(self, repo: Path, root: str, cpuinfo: Path, ca_bundle: str) -> None:
        self.repo, self.root, self.cpuinfo, self.ca_bundle = repo, root, cpuinfo, ca_bundle

    def prepare_files(self) -> None:
        Path(self.root, "etc/interformer-edge").mkdir(parents=True, exist_ok=True)
        Path(self.root + in_root.BASE).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.cpuinfo, self.root + in_root.CPUINFO)
        resolv = Path(self.root, "etc/resolv.conf")
        if resolv.is_symlink():  # never write through a link of the root (it may point at a host path)
            resolv.unlink()
        resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
        ca = Path(self.root + in_root.CA_BUNDLE)
        if os.access(self.ca_bundle, os.R_OK):
            shutil.copyfile(self.ca_bundle, ca)
        else:
            ca.unlink(missing_ok=True)

    def _files(self) -> list[str] | None:
        """Tracked + untracked-but-not-ignored files (the work tree as the lead sees it); None without git."""
        if subprocess.run(
            ["git", "-C", str(self.repo), "rev-parse", "--is-inside-work-tree"], capture_output=True
        ).returncode:
            return None
        listed = subprocess.run(
            ["git", "-C", str(self.repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [name for name in listed.split("\0") if name and (self.repo / name).is_file()]

    def sync_source(self) -> None:
        dest = Path(self.root + in_root.SRC)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        files = self._files()
        if files is None:
            shutil.copytree(self.repo, dest, symlinks=True, dirs_exist_ok=True, ignore=self._ignore)
        for name in files or []:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = self.repo / name
            if source.is_symlink():
                target.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, target)
        count = sum(len([f for f in names if Path(folder, f).is_file()]) for folder, _, names in os.walk(dest))
        log(f"copied {count} files ({disk_usage(str(dest))}) to {in_root.SRC}")

    def _ignore(self, folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == self.repo
        excluded = {".git", "__pycache__", ".venv"} | (TOP_LEVEL_EXCLUDES if top else set())
        return {name for name in names if name in excluded or name.endswith(".egg-info")}

    def _replace(self, source: str, inside: str) -> bool:
        """Replace ``inside`` (a path in the root) by a copy of ``source``; False if that is no folder."""
        dest = Path(self.root + inside)
        shutil.rmtree(dest, ignore_errors=True)
        if source in ("none", "auto") or not os.path.isdir(source):
            return False
        shutil.copytree(source, dest, symlinks=True)
        return True

    def sync_artifacts(self, source: str) -> None:
        if self._replace(source, in_root.ARTIFACTS):
            log(f"copied {source} ({disk_usage(source)}) to {in_root.ARTIFACTS}")

    def sync_test_exports(self, source: str) -> None:
        if self._replace(source, in_root.TEST_EXPORTS):
            names = " ".join(sorted(f"{p.name}/" for p in Path(source).iterdir() if p.is_dir())) or "*/"
            log(f"copied test exports {source} to {in_root.TEST_EXPORTS}: {names}")
