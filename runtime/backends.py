"""The one place that knows how to run an exported graph: ONNX Runtime or OpenVINO, on the CPU.

>>> graph = load_graph("export/", "decoder", backend="auto", threads=2)
>>> outputs = graph.run({"feat0": f0, ..., "ref_label": ref})   # dict name -> np.ndarray

``load_graph`` takes an export folder (the manifest says which files and formats exist) or a
graph file directly (``.onnx`` → ONNX Runtime, ``.xml`` → OpenVINO), e.g. ``decoder.int8.onnx``.
The backend modules are imported only when a graph is loaded, so a device with just one of
them installed works.

Precision: ONNX Runtime's CPU provider computes in the graph's own types. OpenVINO picks bf16 by
itself on CPUs with AMX / AVX512-BF16, which changes masks; ``precision="f32"`` (the default)
pins ``INFERENCE_PRECISION_HINT=f32`` and ``precision="device"`` leaves the device default.

Threads: every graph may be run from any number of threads at once (the annotator's server runs one
decoder for every tab), and each run's outputs are those of the same run made alone. ONNX Runtime's
``InferenceSession.run`` is thread-safe as it is; an OpenVINO infer request is not (a second ``infer``
on a busy request fails, or returns another call's outputs), so :class:`OvGraph` keeps a pool of them.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from interformer_edge.core.manifest import BASE_PRECISION, Manifest, load_manifest
from interformer_edge.core.messages import first_line

from .errors import BackendError

Backend = Literal["auto", "onnxruntime", "openvino"]
BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino")  # "auto" tries them in this order
# Manifest format name of each backend's files.
FORMAT_OF: dict[str, str] = {"onnxruntime": "onnx", "openvino": "openvino"}
# OpenVINO's compute type for float layers (the word every CLI and the API use, see :mod:`.export`).
COMPUTE_TYPES: tuple[str, ...] = ("f32", "bf16", "f16", "device")
DEFAULT_COMPUTE = "f32"  # exact: pinned, since OpenVINO picks bf16 by itself on CPUs that have it
DEVICE_COMPUTE = "device"  # whatever the CPU computes in by default


class Graph(Protocol):
    """A loaded graph: ``run`` maps input names to arrays and returns every output by name."""

    backend: str
    path: Path
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def installed_backends() -> list[str]:
    """Backends importable here, in ``auto`` order (without importing them)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


@dataclass
class OrtGraph:
    """ONNX Runtime CPU session: ``threads`` intra-op threads, sequential execution (one graph at a time,
    so inter-op threads would only compete with the intra-op pool on a small CPU).

    Idle pool threads sleep instead of spinning: on a device whose other cores are busy (the annotator's
    server, a second model, the desktop), a spinning thread that waits for a preempted peer burns the
    core that peer needs, which made two threads slower than one.
    """

    path: Path
    threads: int | None = None
    dims: dict[str, int] | None = None  # values for the graph's symbolic dimensions (``H``, ``H/4``, ...)
    backend: str = field(default="onnxruntime", init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers etc. are not actionable
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        for dim, value in (self.dims or {}).items():
            options.add_free_dimension_override_by_name(dim, value)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types: report them uniformly
            raise BackendError(f"onnxruntime cannot load {self.path}: {first_line(err)}") from err
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        # Input name → declared shape: ints, and names for the symbolic dimensions.
        self.declared_shapes = {i.name: list(i.shape) for i in self._session.get_inputs()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(self.output_names, inputs)
        except Exception as err:
            raise BackendError(f"onnxruntime failed to run {self.path.name}: {first_line(err)}") from err
        return dict(zip(self.output_names, values, strict=True))


@dataclass
class OvGraph:
    """OpenVINO CPU compiled model (latency mode, one stream) with a pool of infer requests: a run takes
    an idle request, or a new one when every request is busy in another thread, and gives it back after.

    The compiled model is shared by all requests (compiled once, whatever the number of threads). With one
    stream the CPU plugin runs the requests' inferences one at a time on the stream's graph; each request
    holds only its own input and output tensors, so the pool costs about one set of outputs per thread that
    ran at the same time as others.
    """

    path: Path
    threads: int | None = None
    precision: str = "f32"
    shapes: dict[str, tuple[int, ...]] | None = None  # reshape the model to these input shapes
    backend: str = field(default="openvino", init=False)

    def __post_init__(self) -> None:
        config = openvino_config(self.threads, self.precision)
        try:
            core = openvino_core()
            model = core.read_model(str(self.path))
            # Names come from the model as read: after compilation a port can carry extra internal tensor
            # names (e.g. "/backbone/fpn/.../Add_output_0") and get_any_name() may return one of those.
            self.input_names = [port.get_any_name() for port in model.inputs]
            self.output_names = [port.get_any_name() for port in model.outputs]
            if self.shapes:
                model.reshape({name: list(self.shapes[name]) for name in self.input_names if name in self.shapes})
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as err:
            raise BackendError(f"openvino cannot load {self.path}: {first_line(err)}") from err
        # A request serves one inference at a time: a second thread's ``infer`` on it raises "Infer Request is
        # busy", or (when it slips in between the inference and the copy of the outputs) hands back the other
        # call's outputs. Hence one request per concurrent run, reused: creating one allocates its tensors.
        self._idle: list[Any] = [self._compiled.create_infer_request()]
        self._idle_lock = threading.Lock()
        # Compiled ports keep the model's order.
        self._outputs = list(zip(self.output_names, self._compiled.outputs, strict=True))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._idle_lock:
            request = self._idle.pop() if self._idle else None
        try:
            if request is None:  # the compiled model's create_infer_request is thread-safe: no lock held
                request = self._compiled.create_infer_request()
            # share_outputs=False: the request reuses its output buffers at its next run, so results must be
            # copies. share_inputs=True: the request reads the caller's arrays (an idle request keeps a
            # reference to its last inputs until it runs again).
            result = request.infer(inputs, share_inputs=True, share_outputs=False)
            return {name: result[port] for name, port in self._outputs}
        except Exception as err:
            raise BackendError(f"openvino failed to run {self.path.name}: {first_line(err)}") from err
        finally:
            if request is not None:  # back to the pool even after a failure: the next run sets its inputs anew
                with self._idle_lock:
                    self._idle.append(request)


_ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]  # sorted (input name, shape) pairs


def symbolic_dims(declared: dict[str, list[Any]], shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """The value each symbolic dimension (``H/4``, ...) takes in ``shapes``."""
    values: dict[str, int] = {}
    for name, dims in declared.items():
        for dim, size in zip(dims, shapes.get(name, ()), strict=False):
            if isinstance(dim, str) and dim:
                values.setdefault(dim, int(size))
    return values


@dataclass
class SpecializedGraph:
    """A dynamic graph compiled anew for each set of input shapes it meets, the last ``keep`` kept.

    Fixed shapes let the backends plan memory and pick kernels once (OpenVINO: a static model;
    ONNX Runtime: symbolic dimensions fixed, so shape arithmetic folds away). The first run at a new
    size pays the compilation (:meth:`prepare` does it ahead, e.g. when a click session opens).

    Thread-safe: threads that ask for the same new shapes at once wait for one compilation, other shapes
    compile meanwhile, and a graph evicted while a thread still runs it finishes that run (the thread
    holds it).
    """

    path: Path
    threads: int | None = None
    precision: str = "f32"
    backend: str = "onnxruntime"
    keep: int = 2

    def __post_init__(self) -> None:
        # Compiled graphs, least recently used first; and the compilations under way, which the threads that
        # want the same shapes wait for instead of compiling them again (seconds of CPU on a big canvas).
        self._graphs: dict[_ShapeKey, OrtGraph | OvGraph] = {}
        self._compiling: dict[_ShapeKey, Future[OrtGraph | OvGraph]] = {}
        self._lock = threading.Lock()  # guards both dicts; never held while compiling
        probe = self._build(None)  # the dynamic graph: names, and a load error now rather than at a click
        self.input_names, self.output_names = probe.input_names, probe.output_names
        self._declared = probe.declared_shapes if isinstance(probe, OrtGraph) else {}

    def _build(self, shapes: dict[str, tuple[int, ...]] | None) -> OrtGraph | OvGraph:
        if self.backend == "onnxruntime":
            return OrtGraph(self.path, self.threads, symbolic_dims(self._declared, shapes) if shapes else None)
        return OvGraph(self.path, self.threads, self.precision, shapes)

    def prepare(self, shapes: dict[str, tuple[int, ...]]) -> OrtGraph | OvGraph:
        """The graph compiled for ``shapes`` (input name → shape), compiling it if needed.

        Raises:
            BackendError: the compilation failed (in this thread or in the one this thread waited for).
        """
        key: _ShapeKey = tuple(sorted((name, tuple(int(d) for d in shape)) for name, shape in shapes.items()))
        with self._lock:
            graph = self._graphs.pop(key, None)
            if graph is not None:
                self._graphs[key] = graph  # now the most recently used
                return graph
            pending = self._compiling.get(key)
            compiles_here = pending is None
            if pending is None:
                pending = self._compiling[key] = Future()
        if not compiles_here:
            return pending.result()
        try:
            graph = self._build(dict(key))
        except BaseException as err:
            with self._lock:
                del self._compiling[key]
            pending.set_exception(err)
            raise
        with self._lock:
            del self._compiling[key]
            while len(self._graphs) >= max(1, self.keep):
                self._graphs.pop(next(iter(self._graphs)))  # the least recently used
            self._graphs[key] = graph
        pending.set_result(graph)
        return graph

    @property
    def compiled(self) -> int:
        """How many input-shape sets have a compiled graph now."""
        with self._lock:
            return len(self._graphs)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.prepare({name: value.shape for name, value in inputs.items()}).run(inputs)


def openvino_config(threads: int | None, precision: str) -> dict[str, Any]:
    """OpenVINO CPU compile settings: latency mode, one stream, ``threads`` threads (None: OpenVINO's
    choice), ``precision`` the inference precision hint (``"device"``: OpenVINO's default).

    Threads are not pinned to cores. OpenVINO pins from the first core of the process's set, so two
    processes with one thread each (``interformer-encode --workers 2 --threads 1``) share one core
    while the other idles, and a neighbour busy on that core stalls every parallel step of a click.
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": False}
    if precision != "device":
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


@functools.cache
def openvino_core() -> Any:
    """One OpenVINO ``Core`` per process, shared by every graph.

    Besides being the documented way to use OpenVINO, this avoids a crash: each ``Core`` installs a
    signal alternate stack (``sigaltstack``) on the thread that first compiles with it and puts back
    the previous one when it is destroyed. Cores destroyed out of creation order leave the thread
    pointing at freed memory, and the next signal handled there (e.g. SIGCHLD when a forked child
    exits, as PyTorch's DataLoader workers do) segfaults the process.
    """
    import openvino as ov

    return ov.Core()


def openvino_device_precision() -> str:
    """What OpenVINO computes float layers in on this CPU when not told (``precision="device"``):
    ``bf16`` on AVX512-BF16 / AMX x86, ``f16`` on ARM with fp16 arithmetic, otherwise ``f32``."""
    value = openvino_core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    to_string = getattr(value, "to_string", None)  # an ov.Type
    return str(to_string()) if callable(to_string) else str(value)


def _backend_of_file(path: Path) -> str:
    if path.suffix == ".onnx":
        return "onnxruntime"
    if path.suffix == ".xml":
        return "openvino"
    raise BackendError(f"cannot tell the format of {path} (expected .onnx or .xml)")


def check_precision(backend: str, precision: str) -> None:
    """Raise :class:`BackendError` for a precision the backend cannot honour."""
    if precision not in COMPUTE_TYPES:
        raise BackendError(f"unknown precision {precision!r}; use {', '.join(COMPUTE_TYPES)}")
    if backend == "onnxruntime" and precision not in ("f32", "device"):
        raise BackendError(f"onnxruntime runs graphs in their own precision; {precision!r} needs openvino")


def choose_backend(manifest: Manifest, graph: str, backend: str = "auto", variant: str = BASE_PRECISION) -> str:
    """The backend to run ``graph`` (in precision ``variant``: ``fp32`` or a quantized variant such as
    ``int8``) of an export with: the one asked for, or under ``auto`` the first installed backend
    (ONNX Runtime, then OpenVINO) whose format the export has."""
    if backend not in ("auto", *BACKENDS):
        raise BackendError(f"unknown backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    if graph not in manifest.graphs:
        raise BackendError(f"unknown graph {graph!r}; the export has {', '.join(manifest.graphs)}")
    if variant not in manifest.precisions(graph):
        raise BackendError(
            f"the export has no {variant} {graph} (has {', '.join(manifest.precisions(graph))}; "
            "interformer-quantize adds int8)"
        )
    formats = manifest.files_of(graph, variant)
    installed = installed_backends()
    candidates = BACKENDS if backend == "auto" else (backend,)
    for name in candidates:
        if FORMAT_OF[name] in formats and name in installed:
            return name
    raise BackendError(
        f"no way to run the {variant} {graph}: the export has {', '.join(formats) or 'no files'} for it, "
        f"installed backends: {', '.join(installed) or 'none'} (asked for {backend})"
    )


def load_graph(
    path_or_dir: str | Path,
    graph: str = "encoder",
    backend: str = "auto",
    threads: int | None = None,
    precision: str = "f32",
    manifest: Manifest | None = None,
    variant: str = BASE_PRECISION,
    specialize: bool = False,
    keep_sizes: int = 2,
) -> Graph:
    """Load one graph for inference.

    Args:
        path_or_dir: an export folder (with ``manifest.json``) or a ``.onnx`` / ``.xml`` file.
        graph: ``"encoder"`` or ``"decoder"`` (ignored when a file is given).
        backend: ``"auto"``, ``"onnxruntime"`` or ``"openvino"``.
        threads: CPU threads for the graph (None: the backend's default, usually all cores).
        precision: OpenVINO inference precision: ``"f32"`` (default), ``"bf16"``, ``"f16"``, or
            ``"device"`` for the device default. ONNX Runtime accepts only ``"f32"``/``"device"``.
        manifest: the already loaded manifest of ``path_or_dir`` (saves reading and hashing it again).
        variant: which of the export's graphs: ``"fp32"`` (the exported one) or a quantized variant
            recorded in the manifest (``"int8"``). Ignored when a file is given.
        specialize: compile the graph for each input size it meets (:class:`SpecializedGraph`), keeping the
            last ``keep_sizes`` compiled.

    Raises:
        BackendError: unknown option, no installed backend for the export's formats, or load failure.
        ManifestError: the export folder is broken (from :func:`load_manifest`).
    """
    check_precision(backend, precision)
    if threads is not None and threads < 1:
        raise BackendError(f"threads must be >= 1, got {threads}")
    path = Path(path_or_dir)
    if path.is_dir() or manifest is not None:
        manifest = manifest if manifest is not None else load_manifest(path)
        name = choose_backend(manifest, graph, backend, variant)
        path = manifest.graph_path(graph, FORMAT_OF[name], variant)
    else:
        if not path.is_file():
            raise BackendError(f"no graph file or export folder at {path}")
        name = _backend_of_file(path)
        if backend not in ("auto", name):
            raise BackendError(f"{path.name} is a {FORMAT_OF[name]} file; it cannot run on {backend}")
        if name not in installed_backends():
            raise BackendError(f"{name} is not installed, so {path.name} cannot run")
    check_precision(name, precision)
    if specialize:
        return SpecializedGraph(path, threads, precision, name, keep=keep_sizes)
    if name == "onnxruntime":
        return OrtGraph(path, threads)
    return OvGraph(path, threads, precision)
