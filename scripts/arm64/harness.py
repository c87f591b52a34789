#!/usr/bin/env python3
"""Prove by emulation that the lean (torch-free) interformer-edge package works on aarch64.

The driver of ``make test-arm64``; ``python3 scripts/arm64/harness.py --help`` explains every option
and scripts/arm64/README.md the steps. Standard library only. Beside it: harness_options.py (flags,
environment, defaults), harness_steps.py (messages, host commands, steps and the summary table),
harness_root.py (host tools, binfmt_misc, building the root, running commands in it), harness_host.py
(exports made on the host with torch, copying into the root), in_root.py (the steps inside the root)
and enter_root.sh (the mounts and chroot: the only bash).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import in_root
from harness_host import HostExports, RootCopier
from harness_options import REPO, parse_options
from harness_root import Binfmt, HostTools, RootFS, RootRunner
from harness_steps import (
    CommandError,
    SignalReceivedError,
    Steps,
    die,
    disk_usage,
    log,
    raise_on_signals,
    run_interactive,
    warn,
)

TESTS = "(b) pytest (torch-free tests)"
BENCH = "(c) benchmark"


class Harness:
    """The steps of one run, in order; the summary table and the exit status."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.root = opts.root
        self.log_dir = Path(f"{opts.root}.logs")
        self.fs = RootFS(opts.root, opts.env["ARM64_SUITE"], opts.env["ARM64_MIRROR"], self.log_dir)
        cpuinfo = "" if opts.no_fake_cpuinfo else in_root.CPUINFO
        self.runner = RootRunner(opts.root, opts.mode, opts.qemu_cpu, cpuinfo, opts.env["ARM64_NICE"])
        self.tools, self.binfmt = HostTools(), Binfmt()
        host_python = opts.env["ARM64_HOST_PYTHON"]
        self.exports = HostExports(REPO, opts.root, self.log_dir, opts.env["ARM64_NICE"], host_python)
        self.copier = RootCopier(REPO, opts.root, opts.cpuinfo, opts.env["ARM64_CA_BUNDLE"])
        self.steps = Steps(self.describe)
        self.artifacts = opts.artifacts

    def describe(self) -> list[tuple[str, str]]:
        fake = "yes" if self.runner.cpuinfo else "NO"
        cpu = f"{self.opts.cpu} (QEMU_CPU={self.opts.qemu_cpu}, fake cpuinfo: {fake})"
        root = f"{self.root} ({disk_usage(self.root, one_file_system=True)})"
        return [("mode", self.runner.mode), ("root", root), ("emulated cpu", cpu), ("logs", str(self.log_dir))]

    def grep_log(self, name: str, pattern: str) -> list[str]:
        try:
            text = (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def choose_mode(self) -> None:
        """binfmt_misc + chroot if it can be set up, else PRoot (--mode auto); sets the runner's mode."""
        mode = self.opts.mode
        if mode != "proot":
            if self.binfmt.setup():
                mode = "binfmt"
            elif mode == "binfmt":
                die(f"binfmt mode requested but: {self.binfmt.note}")
            else:
                warn(f"binfmt_misc unusable ({self.binfmt.note}); falling back to PRoot + qemu")
                mode = "proot"
        if mode == "proot":
            self.tools.ensure_proot()
        self.runner.mode = mode
        self.steps.note("binfmt_misc", self.binfmt.note)
        log(f"execution mode: {mode} ({self.binfmt.note})")

    def setup(self) -> None:
        """Host tools, execution mode, the root (cached); any failure ends the run."""
        self.steps.run("host tools", lambda: self.tools.ensure(self.opts.mode == "proot"))
        self.steps.abort_if_failed("could not install the host tools")
        self.choose_mode()
        build = functools.partial(self.fs.build, self.runner, self.binfmt.interpreter)
        self.steps.run(f"arm64 root ({self.opts.env['ARM64_SUITE']}, debootstrap, cached)", build)
        self.steps.abort_if_failed(f"could not build the arm64 root (logs in {self.log_dir})")
        if self.runner.mode == "binfmt" and not self.runner.binfmt_works():
            if self.opts.mode != "auto":
                die(f"binfmt is registered but cannot run {self.root}/usr/bin/true")
            warn("binfmt is registered but arm64 programs do not run; falling back to PRoot")
            self.runner.mode = "proot"
            self.tools.ensure_proot()

    def host_exports(self) -> None:
        """Exports made on the host with torch (cached); a failure only drops what needs them."""
        build_tests = not self.opts.no_tests and self.opts.test_exports == "auto"
        if build_tests and not self.steps.run("test exports (host, torch; cached)", self.exports.build_test_exports):
            shutil.rmtree(self.exports.test_cache, ignore_errors=True)
        if self.opts.bench != "none" and self.artifacts == "auto":
            ok = self.steps.run("default model export (host, torch; cached)", self.exports.build_default_export)
            self.artifacts = str(self.exports.default_cache) if ok else "none"

    def copy_in(self) -> None:
        self.copier.prepare_files()
        self.copier.sync_source()
        self.copier.sync_artifacts(self.artifacts)
        test_exports = self.opts.test_exports
        self.copier.sync_test_exports(str(self.exports.test_cache) if test_exports == "auto" else test_exports)

    def root_step(self, title: str, name: str, *args: str) -> bool:
        """A step that runs one in_root.py command inside the root, logged to LOG_DIR/<name>.log."""
        return self.steps.run(title, lambda: self.runner.step(self.log_dir, name, *args))

    def install(self) -> None:
        self.root_step("venv + pip install <repo> (lean, no torch)", "install-lean", "lean")
        self.steps.abort_if_failed("the lean package does not install on aarch64")
        versions = self.grep_log("install-lean", r"^(numpy|onnxruntime|pillow|typer|rich|psutil)==")
        self.steps.note("lean venv", " ".join(versions))

    def smoke(self) -> None:
        self.root_step("(a) import smoke test", "smoke", "smoke")
        facts = self.grep_log("smoke", r"^(machine|cpuinfo_model|hwcap|onnxruntime):")
        self.steps.note("smoke", "; ".join(facts) or "n/a")

    def tests(self) -> None:
        if self.opts.no_tests:
            self.steps.skip(TESTS, "--no-tests")
            return
        extras = self.opts.env["ARM64_TEST_EXTRAS"].split()
        if not self.root_step("test venv (pytest, scipy)", "install-test-tools", "test-venv", *extras):
            self.steps.skip(TESTS, "test venv failed")
            return
        self.root_step(TESTS, "pytest", "pytest", *self.opts.pytest_args)
        result = self.grep_log("pytest", r"(passed|failed|error)")
        self.steps.note("pytest", result[-1] if result else "n/a")

    def bench_args(self) -> list[str]:
        """A short interformer-bench: 1 and N threads, one square size, few runs and objects."""
        env = self.opts.env
        if env["ARM64_BENCH_ARGS"]:
            return shlex.split(env["ARM64_BENCH_ARGS"])
        size, clicks = env["ARM64_BENCH_SIZE"], env["ARM64_BENCH_CLICKS"]
        args = ["--threads", f"1,{self.opts.threads}", "--sizes", f"{size}x{size}", "--runs", env["ARM64_BENCH_RUNS"]]
        args += ["--budget", "0", "--warmup", "1", "--limit", env["ARM64_BENCH_LIMIT"], "--clicks", clicks]
        return [*args, "--memory-clicks", clicks]

    def bench(self) -> None:
        """Lean venv only (no torch: no PyTorch row; no openvino: ONNX Runtime), labelled as emulated."""
        if self.opts.bench == "none":
            self.steps.skip(BENCH, "--bench none")
            return
        if not Path(self.artifacts).is_dir():
            self.steps.skip(BENCH, "no export to benchmark (--artifacts none, or the default export failed)")
            return
        label = f"EMULATED (qemu {self.opts.qemu_cpu}, {self.opts.cpu} cpuinfo) — not Raspberry Pi figures"
        report = self.log_dir / "bench-report"
        shutil.rmtree(report, ignore_errors=True)
        self.root_step("(c) interformer-bench (EMULATED)", "bench", "bench", label, *self.bench_args())
        if Path(self.root + in_root.BENCH_OUT).is_dir():
            shutil.copytree(self.root + in_root.BENCH_OUT, report, symlinks=True)
            log(f"benchmark report: {report}/report.md")
        lines = self.grep_log("bench", r"^BENCH_SUMMARY") or [f"BENCH_SUMMARY see {self.log_dir}/bench.log"]
        for line in lines:
            self.steps.note("bench (EMULATED)", line.removeprefix("BENCH_SUMMARY "))

    def clean(self) -> None:
        """--rebuild / --clean: delete the root and the logs."""
        self.fs.remove()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True)

    def run(self) -> int:
        if self.opts.rebuild or self.opts.clean:
            self.clean()
            if self.opts.clean:
                log("cleaned")
                return 0
        log(f"repo {REPO} → arm64 root {self.root} (profile {self.opts.cpu}, QEMU_CPU={self.opts.qemu_cpu})")
        self.setup()
        self.host_exports()
        self.steps.run("copy repo (+ artifacts) into the root", self.copy_in)
        self.steps.abort_if_failed("could not copy the repository into the root")
        self.install()
        if self.opts.shell:
            log("interactive shell in the root (exit to continue)")
            run_interactive(self.runner.argv(["/bin/bash", "-l"]))
        self.smoke()
        self.tests()
        self.bench()
        self.steps.print_summary()
        return 1 if self.steps.failed else 0

    def unmount_all(self) -> bool:
        """Unmount anything under the root in the host's namespace; False (and a warning) if some remain."""
        self.fs.unmount()
        left = self.fs.mounts()
        if left:
            warn(f"mounts left under {self.root}:\n" + "\n".join(left))
        return not left


@contextmanager
def locked(path: str) -> Iterator[None]:
    """One run per root: an exclusive flock on ROOT.lock, held until the run ends."""
    with open(path, "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            die(f"another run is using {path.removesuffix('.lock')} (lock {path})")
        yield


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    harness = Harness(parse_options(argv))
    harness.log_dir.mkdir(parents=True, exist_ok=True)
    raise_on_signals()
    with locked(f"{harness.root}.lock"):
        status = 1
        try:
            status = harness.run()
        except SignalReceivedError as err:
            warn("interrupted")
            status = err.status
        except CommandError as err:
            print(f"\033[1;31m[arm64] error:\033[0m {err} failed (exit {err.status})", file=sys.stderr)
            status = err.status
        finally:
            mounts_ok = harness.unmount_all()  # also after failures, SIGINT and SIGTERM
        return status if mounts_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
