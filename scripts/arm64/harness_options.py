"""Options of the arm64 harness (harness.py): command line over environment over built-in defaults."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from harness_steps import die

SCRIPT_DIR = Path(__file__).resolve().parent
REPO = SCRIPT_DIR.parent.parent
QEMU_CPUS = {"pi5": "cortex-a76", "pi4": "cortex-a72"}
DANGEROUS = re.compile(r"^(/|/(bin|boot|dev|etc|lib|proc|sbin|sys).*|/usr(/.*)?|/var|/tmp|/work|/root|/home)$")


def env_defaults() -> dict[str, str]:
    """The defaults: the environment variables, else the built-in values (empty counts as unset)."""
    builtin = {
        "ARM64_ROOT": "/var/tmp/interformer-arm64-root",
        "ARM64_SUITE": "bookworm",
        "ARM64_MIRROR": "http://deb.debian.org/debian",
        "ARM64_CPU": "pi5",
        "ARM64_MODE": "auto",
        "ARTIFACTS": "auto",
        "ARM64_BENCH": "cli",
        "ARM64_BENCH_SIZE": "320",
        "ARM64_BENCH_RUNS": "3",
        "ARM64_BENCH_LIMIT": "1",
        "ARM64_BENCH_CLICKS": "3",
        "ARM64_BENCH_ARGS": "",
        "ARM64_THREADS": str(len(os.sched_getaffinity(0))),
        "ARM64_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "ARM64_TEST_EXPORTS": "auto",
        "ARM64_HOST_PYTHON": "",
        "ARM64_TEST_EXTRAS": "pytest>=8 scipy>=1.10 openvino>=2024.0 onnx>=1.16",
        "ARM64_QEMU_CPU": "",
        "ARM64_NICE": "10",
    }
    return {name: os.environ.get(name) or value for name, value in builtin.items()}


DESCRIPTION = """\
Proves by emulation (qemu-user, Debian {ARM64_SUITE} arm64 root) that the lean, torch-free
interformer-edge package installs from PyPI wheels and works on aarch64 (Raspberry Pi 4/5 class):

  1. installs host tools if missing (debootstrap, qemu-user-static, binfmt-support; proot if needed)
  2. builds a Debian arm64 root with debootstrap (cached: later runs reuse it)
  3. creates a venv in the root and runs 'pip install <copy of this repo>' (aarch64 wheels from PyPI),
     checks that torch is NOT installed; pytest + scipy go into a separate test venv
  4. mounts /proc (with a Raspberry-Pi-style /proc/cpuinfo bound over it), /sys, /dev in a private
     mount namespace (scripts/arm64/enter_root.sh), so nothing can leak onto the host
  5. runs (a) an import smoke test, (b) the torch-free tests, (c) a short interformer-bench of an
     export ($ARTIFACTS; by default the bundled model, exported on the host with torch and cached):
     latency, memory, parity and accuracy, labelled EMULATED — not Raspberry Pi figures
  6. prints a summary; exits non-zero if any step failed

Options show their environment variable in brackets."""

EPILOG = """\
Other environment: ARM64_SUITE ({ARM64_SUITE}), ARM64_MIRROR ({ARM64_MIRROR}),
  ARM64_CA_BUNDLE (host CA bundle copied into the root for pip; default {ARM64_CA_BUNDLE}),
  ARM64_TEST_EXTRAS (test venv additions, default "{ARM64_TEST_EXTRAS}"),
  ARM64_QEMU_CPU (override the qemu CPU model, e.g. max), ARM64_NICE (niceness of emulated
  processes, default {ARM64_NICE}; the machine is shared), ARM64_HOST_PYTHON (a python with torch
  for the host-side exports; default this interpreter if it has torch, else the repo's .venv/bin/python).
Needs root (debootstrap, chroot, mounts). Logs: ROOT.logs/<step>.log."""

FLAGS = (  # (flag, environment variable, argparse keywords, help); help is formatted with the defaults
    (
        "--root",
        "ARM64_ROOT",
        {"metavar": "DIR"},
        "arm64 root location, outside the repo [ARM64_ROOT, default {ARM64_ROOT}]",
    ),
    (
        "--artifacts",
        "ARTIFACTS",
        {"metavar": "auto|none|DIR"},
        "export folder to benchmark (manifest.json + graphs, e.g. with an int8 decoder from "
        "interformer-quantize); auto: the bundled default model, exported on the host (host python with "
        "torch, see --test-exports) into ROOT.default-export, cached by source hash; none: no benchmark "
        "[ARTIFACTS, default {ARTIFACTS}]",
    ),
    (
        "--cpu",
        "ARM64_CPU",
        {"metavar": "pi5|pi4"},
        "emulated board: pi5 = Cortex-A76 (QEMU_CPU=cortex-a76, dotprod), pi4 = Cortex-A72 "
        "(QEMU_CPU=cortex-a72, no dotprod) [ARM64_CPU, default {ARM64_CPU}]",
    ),
    (
        "--mode",
        "ARM64_MODE",
        {"metavar": "auto|binfmt|proot"},
        "how arm64 programs run: binfmt_misc + chroot, or PRoot with qemu (no binfmt needed); auto tries "
        "binfmt first [ARM64_MODE, default {ARM64_MODE}]",
    ),
    (
        "--bench",
        "ARM64_BENCH",
        {"metavar": "cli|none"},
        "benchmark with the lean venv's interformer-bench, or none [ARM64_BENCH, default {ARM64_BENCH}]: "
        "sizes ARM64_BENCH_SIZE={ARM64_BENCH_SIZE} (square), ARM64_BENCH_RUNS={ARM64_BENCH_RUNS} timed runs, "
        "accuracy on ARM64_BENCH_LIMIT={ARM64_BENCH_LIMIT} held-out object(s) x "
        "ARM64_BENCH_CLICKS={ARM64_BENCH_CLICKS} clicks; ARM64_BENCH_ARGS replaces those flags. "
        "Report: ROOT.logs/bench-report/",
    ),
    (
        "--threads",
        "ARM64_THREADS",
        {"metavar": "N"},
        "largest thread count of the benchmark (it measures 1 and N) [ARM64_THREADS, default {ARM64_THREADS}]",
    ),
    ("--no-tests", None, {"action": "store_true"}, "skip the pytest step (and the test venv and test exports)"),
    (
        "--test-exports",
        "ARM64_TEST_EXPORTS",
        {"metavar": "auto|none|DIR"},
        "model folders for the runtime tests' light_export/tiny_export fixtures, which conftest builds with "
        "torch: DIR holds prebuilt light/ tiny/ exports; auto builds them on the host with "
        "scripts/arm64/make_test_exports.py (needs a host python with torch: ARM64_HOST_PYTHON, else this "
        "interpreter if it has torch, else the repo's .venv; cached by source hash in ROOT.test-exports); "
        "none: those tests are skipped [ARM64_TEST_EXPORTS, default {ARM64_TEST_EXPORTS}]",
    ),
    (
        "--no-fake-cpuinfo",
        None,
        {"action": "store_true"},
        "do NOT bind a Raspberry Pi cpuinfo over /proc/cpuinfo (reproduces the onnxruntime crash)",
    ),
    ("--rebuild", None, {"action": "store_true"}, "delete the cached root and build it again"),
    ("--shell", None, {"action": "store_true"}, "after the lean install, open an interactive shell inside the root"),
    ("--clean", None, {"action": "store_true"}, "delete the cached root (and its logs) and exit"),
)


class HarnessParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 1, like every other refusal
        self.print_usage(sys.stderr)
        die(message)


def parse_options(argv: list[str]) -> argparse.Namespace:
    """The options: command line over environment over built-in defaults; '--' starts pytest arguments."""
    pytest_args: list[str] = []
    if "--" in argv:
        argv, pytest_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    defaults = env_defaults()
    parser = HarnessParser(
        prog="python3 scripts/arm64/harness.py",
        usage="%(prog)s [options] [-- extra pytest args]\n       make test-arm64 [ARTIFACTS=/path/to/export]",
        description=DESCRIPTION.format(**defaults),
        epilog=EPILOG.format(**defaults),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, env, keywords, text in FLAGS:
        default = defaults[env] if env else False
        parser.add_argument(flag, default=default, help=text.format(**defaults).replace("%", "%%"), **keywords)
    opts = parser.parse_args(argv)
    opts.env, opts.pytest_args = defaults, pytest_args
    return validate(opts)


def validate(opts: argparse.Namespace) -> argparse.Namespace:
    """Refuse bad values and dangerous roots; resolve folders. Exits 1 with a message."""
    if opts.cpu not in QEMU_CPUS:
        die(f"--cpu must be pi5 or pi4, not '{opts.cpu}'")
    opts.qemu_cpu = opts.env["ARM64_QEMU_CPU"] or QEMU_CPUS[opts.cpu]
    opts.cpuinfo = SCRIPT_DIR / "cpuinfo" / f"{opts.cpu}.txt"
    if opts.mode not in ("auto", "binfmt", "proot"):
        die("--mode must be auto, binfmt or proot")
    if opts.bench not in ("cli", "none"):
        die("--bench must be cli or none")
    if not re.fullmatch(r"[1-9][0-9]*", opts.threads):
        die("--threads must be a positive integer")
    if not opts.root.startswith("/"):
        die(f"the root must be an absolute path (got '{opts.root}')")
    opts.root = os.path.normpath(opts.root)
    for path in (opts.root, os.path.realpath(opts.root)):
        if DANGEROUS.match(path):
            die(f"refusing to use '{opts.root}' as the arm64 root; pick a dedicated directory")
        if path == str(REPO) or path.startswith(f"{REPO}/"):
            die(f"the root must live outside the repository ({REPO})")
    if os.geteuid() != 0:
        die("run as root (debootstrap, chroot and mounts need it)")
    if not os.access(opts.cpuinfo, os.R_OK):
        die(f"missing {opts.cpuinfo}")
    if opts.artifacts not in ("auto", "none"):
        if not os.path.isdir(opts.artifacts):
            die(f"ARTIFACTS folder not found: {opts.artifacts}")
        opts.artifacts = os.path.realpath(opts.artifacts)
        if not os.path.isfile(f"{opts.artifacts}/manifest.json"):
            die(f"ARTIFACTS={opts.artifacts} has no manifest.json (not an export folder)")
    if opts.test_exports not in ("auto", "none"):
        if not os.path.isdir(opts.test_exports):
            die(f"test exports folder not found: {opts.test_exports}")
        opts.test_exports = os.path.realpath(opts.test_exports)
    return opts
