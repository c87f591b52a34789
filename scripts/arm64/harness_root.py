"""The arm64 root: host tools, binfmt_misc, running commands inside the root, building and removing it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import in_root
from harness_steps import die, log, run, warn

DEB_INCLUDE = "python3,python3-venv,ca-certificates"
ROOT_OK_MARK = ".interformer-arm64-root-ok"
ENTER_ROOT = Path(__file__).resolve().with_name("enter_root.sh")
BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "http_proxy", "https_proxy", "no_proxy")
PASSED_ENV += ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def quiet_status(*argv: str) -> int:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode


class HostTools:
    """Installs what the host needs from Debian (one `apt-get update` per run)."""

    def __init__(self) -> None:
        self.updated = False

    def install(self, *packages: str) -> None:
        if not self.updated:
            log("apt-get update")
            run(["apt-get", "update", "-qq"])
            self.updated = True
        log(f"apt-get install {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, quiet=True)

    def ensure(self, need_proot: bool) -> None:
        wanted = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static"}
        wanted |= {"update-binfmts": "binfmt-support", "unshare": "util-linux"}
        if need_proot:
            wanted["proot"] = "proot"
        missing = [package for command, package in wanted.items() if shutil.which(command) is None]
        if missing:
            self.install(*missing)
        else:
            log("host tools present")
        version = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True, check=True)
        print(version.stdout.splitlines()[0] if version.stdout else "qemu-aarch64-static: no version", flush=True)

    def ensure_proot(self) -> None:
        if shutil.which("proot") is None:
            self.install("proot")


class Binfmt:
    """binfmt_misc: mounts it if needed and enables the qemu-aarch64 handler."""

    def __init__(self) -> None:
        self.note = "not used (--mode proot)"
        self.interpreter = ""  # qemu's path inside the root, when the handler lacks the F flag

    @staticmethod
    def entry() -> dict[str, str]:
        try:
            lines = Path(BINFMT_DIR, "qemu-aarch64").read_text(encoding="utf-8").splitlines()
        except OSError:
            return {}
        return {words[0].rstrip(":"): (words[1] if len(words) > 1 else "") for words in map(str.split, lines) if words}

    def setup(self) -> bool:
        """True if arm64 ELF files can run transparently (else PRoot is used); sets ``note``."""
        if not os.path.ismount(BINFMT_DIR):
            if quiet_status("mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR) != 0:
                self.note = "binfmt_misc cannot be mounted here"
                return False
            log(f"mounted binfmt_misc on {BINFMT_DIR}")
        if "enabled" not in self.entry():
            quiet_status("update-binfmts", "--enable", "qemu-aarch64")
        entry = self.entry()
        if "enabled" not in entry:
            self.note = "qemu-aarch64 handler could not be registered"
            return False
        if "F" not in entry.get("flags", ""):
            # Without the F (fix-binary) flag the interpreter path is resolved inside the chroot.
            self.interpreter = entry.get("interpreter", "")
        self.note = f"qemu-aarch64 registered ({entry.get('flags', '')} flags)"
        return True


class RootRunner:
    """Runs a command inside the root, niced (the machine is shared), with a reset environment.

    binfmt mode: enter_root.sh in a private mount namespace (or a bare chroot); proot mode: PRoot +
    qemu with binds instead of mounts. ``cpuinfo`` ('' for none) is bound over /proc/cpuinfo.
    """

    def __init__(self, root: str, mode: str, qemu_cpu: str, cpuinfo: str, nice: str) -> None:
        self.root, self.mode, self.qemu_cpu, self.cpuinfo, self.nice = root, mode, qemu_cpu, cpuinfo, nice

    def env(self) -> list[str]:
        """`env -i` plus the environment inside the root; QEMU_CPU selects the emulated core."""
        term = os.environ.get("TERM") or "dumb"
        env = ["env", "-i", f"PATH={ROOT_PATH}", "HOME=/root", "LANG=C.UTF-8", f"TERM={term}"]
        env.append(f"QEMU_CPU={self.qemu_cpu}")
        env += ["PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_DEFAULT_TIMEOUT=120", "PYTHONUNBUFFERED=1"]
        if os.path.isfile(self.root + in_root.CA_BUNDLE):
            env += [f"{var}={in_root.CA_BUNDLE}" for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
        env += [f"{var}={os.environ[var]}" for var in PASSED_ENV if os.environ.get(var)]
        return env

    def argv(self, command: list[str], bare: bool = False) -> list[str]:
        """The host command line; ``bare``: no mounts of ours (debootstrap's second stage)."""
        nice = ["nice", "-n", self.nice]
        inner = [*self.env(), *command]
        if self.mode == "binfmt":
            unshare = ["unshare", "--mount", "--propagation", "private", "--"]
            if bare:
                return [*nice, *unshare, "chroot", self.root, *inner]
            return [*nice, *unshare, "bash", str(ENTER_ROOT), self.root, self.cpuinfo, *inner]
        binds = ["-b", "/dev", "-b", "/proc", "-b", "/sys"]
        if self.cpuinfo and not bare:
            binds += ["-b", f"{self.root}{self.cpuinfo}:/proc/cpuinfo"]
        qemu = f"qemu-aarch64-static -cpu {self.qemu_cpu}"
        return [*nice, "proot", "-q", qemu, "-0", "-r", self.root, "-w", "/root", *binds, *inner]

    def run(self, command: list[str], log_file: Path, *, bare: bool = False, tee: bool = True, tail: int = 0) -> None:
        """Run ``command``, its output to ``log_file`` and (``tee``) the terminal; CommandError if it fails."""
        run(self.argv(command, bare), log_file=log_file, tee=tee, tail=tail)

    def step(self, log_dir: Path, name: str, *args: str) -> None:
        """One in_root.py command (see there), run by the root's python3, logged to LOG_DIR/<name>.log."""
        self.run(["python3", in_root.SCRIPT, *args], log_file=log_dir / f"{name}.log")

    def binfmt_works(self) -> bool:
        """Can arm64 programs of the root run through binfmt_misc + chroot?"""
        if not any(os.access(f"{self.root}/{p}", os.X_OK) for p in ("bin/true", "usr/bin/true")):
            return False
        probe = ["unshare", "--mount", "--propagation", "private", "--", "chroot", self.root, "/usr/bin/true"]
        return quiet_status(*probe) == 0


class RootFS:
    """The root's directory on the host: mounts under it, building it with debootstrap, deleting it."""

    def __init__(self, root: str, suite: str, mirror: str, log_dir: Path) -> None:
        self.root, self.suite, self.mirror, self.log_dir = root, suite, mirror, log_dir

    def mounts(self) -> list[str]:
        """Mount points under the root in the host's namespace, deepest first."""
        found = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False)
        return sorted((t for t in found.stdout.splitlines() if t.startswith(self.root + "/")), reverse=True)

    def unmount(self) -> None:
        for target in self.mounts():
            if quiet_status("umount", target) != 0 and quiet_status("umount", "-l", target) != 0:
                warn(f"could not unmount {target}")

    def remove(self) -> None:
        self.unmount()
        if self.mounts():
            die(f"mounts remain under {self.root}; not deleting it")
        if os.path.lexists(self.root):
            log(f"deleting {self.root}")
            run(["rm", "-rf", "--one-file-system", self.root])

    def build(self, runner: RootRunner, interpreter: str) -> None:
        """debootstrap (stage 1 on the host, stage 2 under qemu); cached by a marker file."""
        mark = Path(self.root, ROOT_OK_MARK)
        if mark.is_file():
            log(f"reusing cached root {self.root} (built {mark.read_text(encoding='utf-8').strip()})")
            return
        if os.path.lexists(self.root):
            warn(f"{self.root} exists but is incomplete (interrupted build?); rebuilding")
            self.remove()
        log(f"debootstrap stage 1: {self.suite} arm64 (minbase + {DEB_INCLUDE}) from {self.mirror}")
        stage1 = ["debootstrap", "--arch=arm64", "--variant=minbase", "--foreign", f"--include={DEB_INCLUDE}"]
        run([*stage1, self.suite, self.root, self.mirror], log_file=self.log_dir / "debootstrap-1.log", tail=20)
        if interpreter:
            Path(self.root + interpreter).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shutil.which("qemu-aarch64-static") or "/usr/bin/qemu-aarch64-static", self.root + interpreter)
        # PRoot: /proc must be a directory to bind onto (a /proc -> /proc symlink loops), and dash's
        # `[ -x ]` is wrong under PRoot's fake root, so debootstrap cannot find its own directory.
        proc = Path(self.root, "proc")
        if proc.is_symlink():
            proc.unlink()
            proc.mkdir()
        log(f"debootstrap stage 2 under qemu ({runner.mode}); slow, several minutes")
        stage2 = ["/usr/bin/env", "DEBOOTSTRAP_DIR=/debootstrap", "/debootstrap/debootstrap", "--second-stage"]
        runner.run(stage2, log_file=self.log_dir / "debootstrap-2.log", bare=True, tee=False, tail=20)
        for deb in Path(self.root, "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        mark.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n", encoding="utf-8")
