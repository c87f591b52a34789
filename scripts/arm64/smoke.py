"""Import smoke test for the lean (torch-free) install, run inside the emulated arm64 root.

Checks that the interpreter is aarch64, that ``torch`` is *not* installed, that every module of
``interformer_edge.runtime`` imports, and that onnxruntime imports and can build a session. Prints one
``key: value`` line per fact (harness.py greps a few of them into its summary). Exits non-zero on failure.

Standard library + the lean dependencies only: this runs in the lean venv, before any test tool is there.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform
import sys

# Linux arm64 AT_HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h); what qemu's -cpu model advertises.
AT_HWCAP = 16
HWCAP_BITS = {"asimd": 1, "aes": 3, "crc32": 7, "atomics": 8, "asimdhp": 10, "asimdrdm": 12, "asimddp": 20}


def hwcaps() -> str:
    if platform.machine() != "aarch64":
        return "n/a (not aarch64)"
    try:
        value = ctypes.CDLL(None).getauxval(AT_HWCAP)
    except (OSError, AttributeError):
        return "unknown"
    return " ".join(name for name, bit in HWCAP_BITS.items() if value >> bit & 1) or "none"


def cpuinfo_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        return f"unreadable ({exc})"
    for key in ("Model", "model name", "CPU part"):
        for line in lines:
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> int:
    failures: list[str] = []
    print(f"machine: {platform.machine()}")
    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"cpuinfo_model: {cpuinfo_model()}")
    print(f"hwcap: {hwcaps()}")
    print(f"qemu_cpu: {os.environ.get('QEMU_CPU', '(default)')}")
    if platform.machine() != "aarch64":
        failures.append(f"platform.machine() is {platform.machine()!r}, expected 'aarch64'")

    if importlib.util.find_spec("torch") is not None:
        failures.append("torch is importable in the lean venv (it must not be a dependency)")
    print(f"torch_installed: {importlib.util.find_spec('torch') is not None}")

    import numpy as np
    import onnxruntime as ort

    print(f"numpy: {np.__version__}")
    print(f"onnxruntime: {ort.__version__}")
    print(f"onnxruntime_providers: {','.join(ort.get_available_providers())}")
    for dist in ("pillow", "typer", "rich", "psutil"):
        print(f"{dist}: {importlib.metadata.version(dist)}")

    import interformer_edge
    import interformer_edge.runtime as runtime

    print(f"interformer_edge: {interformer_edge.__version__} ({os.path.dirname(interformer_edge.__file__)})")
    imported = []
    for info in pkgutil.iter_modules(runtime.__path__, prefix="interformer_edge.runtime."):
        try:
            importlib.import_module(info.name)
            imported.append(info.name.rsplit(".", 1)[1])
        except Exception as exc:  # report every broken module, not just the first
            failures.append(f"import {info.name}: {type(exc).__name__}: {exc}")
    print(f"runtime_modules: {len(imported)} imported ({', '.join(imported)})")
    if "torch" in sys.modules:
        failures.append("importing interformer_edge.runtime pulled in torch")

    # Build and run a one-node graph: proves the native library works, not only that the module imports.
    try:
        session = ort.InferenceSession(_identity_model(), providers=["CPUExecutionProvider"])
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        (y,) = session.run(None, {"x": x})
        if not np.array_equal(y, x + x):
            failures.append("onnxruntime Add gave a wrong answer")
        print("onnxruntime_session: ok")
    except Exception as exc:
        failures.append(f"onnxruntime session: {type(exc).__name__}: {exc}")

    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("smoke:", "FAILED" if failures else "ok")
    return 1 if failures else 0


def _identity_model() -> bytes:
    """A serialized ONNX model computing ``y = x + x`` (hand-encoded protobuf: the onnx package is not a dependency)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num: int, payload: bytes) -> bytes:  # length-delimited
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    def int_field(num: int, value: int) -> bytes:
        return varint(num << 3) + varint(value)

    dims = b"".join(field(1, int_field(1, d)) for d in (2, 3))  # TensorShapeProto.dim.dim_value
    tensor_type = int_field(1, 1) + field(2, dims)  # elem_type FLOAT, shape
    type_proto = field(1, tensor_type)

    def value_info(name: str) -> bytes:
        return field(1, name.encode()) + field(2, type_proto)

    node = field(1, b"x") + field(1, b"x") + field(2, b"y") + field(4, b"Add")
    graph = field(1, node) + field(2, b"g") + field(11, value_info("x")) + field(12, value_info("y"))
    opset = int_field(2, 13)  # OperatorSetIdProto.version (default domain)
    return int_field(1, 8) + field(7, graph) + field(8, opset)  # ir_version 8


if __name__ == "__main__":
    sys.exit(main())
