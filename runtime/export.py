"""An export folder opened once, and how to run what it holds.

>>> export = open_export("interformer_export")              # manifest.json read and verified once
>>> settings = RuntimeSettings(backend="openvino", threads=2, compute="f32")
>>> encoder = export.encoder(settings)                       # an Encoder
>>> decoder = export.decoder(settings, variant="int8", static_shapes=True)

Words used the same way across the API and every command line:

* **backend**: the inference engine, ``auto`` (ONNX Runtime if installed and exported, else OpenVINO),
  ``onnxruntime`` or ``openvino``;
* **compute**: the type OpenVINO computes float layers in, ``f32`` (exact), ``bf16``, ``f16`` or
  ``device`` (the CPU's own default); ONNX Runtime runs a graph in the graph's own types (``f32``);
* **variant**: which file of a graph, ``fp32`` (the exported one) or a quantized one (``int8``, written
  by ``interformer-quantize``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from interformer_edge.core.manifest import BASE_PRECISION, Manifest, load_manifest

from .backends import COMPUTE_TYPES, DEFAULT_COMPUTE, DEVICE_COMPUTE
from .features import model_id

__all__ = ["COMPUTE_TYPES", "DEFAULT_COMPUTE", "DEVICE_COMPUTE", "Export", "RuntimeSettings", "open_export"]

if TYPE_CHECKING:
    from .backends import Graph


@dataclass(frozen=True)
class RuntimeSettings:
    """How to run a graph: ``backend``, CPU ``threads`` (None: the backend's default, all cores) and
    OpenVINO's ``compute`` type (see the module docstring)."""

    backend: str = "auto"
    threads: int | None = None
    compute: str = DEFAULT_COMPUTE


@dataclass(frozen=True)
class Export:
    """An export folder: where it lies and its manifest, read (and checked) once. Made by :func:`open_export`."""

    root: Path
    manifest: Manifest

    @property
    def model_id(self) -> str:
        """The id features of this export carry (see :func:`~.features.model_id`)."""
        return model_id(self.manifest)

    def graph(
        self,
        name: str,
        settings: RuntimeSettings = RuntimeSettings(),  # frozen: one default shared safely
        variant: str = BASE_PRECISION,
        specialize: bool = False,
        keep_sizes: int = 2,
    ) -> Graph:
        """One graph (``encoder``, ``context``, ``decoder``) loaded to run (see :func:`~.backends.load_graph`)."""
        from .backends import load_graph

        return load_graph(
            self.root,
            name,
            settings.backend,
            settings.threads,
            settings.compute,
            manifest=self.manifest,
            variant=variant,
            specialize=specialize,
            keep_sizes=keep_sizes,
        )

    def encoder(
        self,
        settings: RuntimeSettings = RuntimeSettings(),
        max_side: int | None = None,
    ):  # -> Encoder: not imported at module level, where it would tie encoder.py and this module in a cycle
        """The image encoder, an :class:`~.encoder.Encoder` (``max_side``: see there)."""
        from .encoder import Encoder

        return Encoder(self, settings.backend, settings.threads, settings.compute, max_side=max_side)

    def decoder(
        self,
        settings: RuntimeSettings = RuntimeSettings(),
        variant: str = BASE_PRECISION,
        static_shapes: bool = False,
        static_sizes: int = 2,
    ):  # -> Decoder (see encoder())
        """The click side (context and decoder graphs) in ``variant``, a :class:`~.decoder.Decoder`."""
        from .decoder import Decoder

        return Decoder(
            self,
            settings.backend,
            settings.threads,
            settings.compute,
            variant=variant,
            static_shapes=static_shapes,
            static_sizes=static_sizes,
        )


def compute_from(compute: str, precision: str | None, where: str) -> str:
    """``compute``, unless the caller used the keyword's old name ``precision=`` (then its value, and a
    :class:`DeprecationWarning`: the old name is accepted for one release)."""
    if precision is None:
        return compute
    warnings.warn(f"{where}(precision=...) is now {where}(compute=...)", DeprecationWarning, stacklevel=3)
    return precision


def open_export(path: str | Path | Export, verify_hashes: bool = True, manifest: Manifest | None = None) -> Export:
    """The export folder at ``path``, its manifest loaded (and with ``verify_hashes`` every artifact's
    sha256 checked) once; an :class:`Export` is returned as it is.

    ``manifest``: one already loaded from ``path`` (it is then not read again).

    Raises:
        ManifestError: no usable manifest (missing, malformed, failed parity gate, changed files).
    """
    if isinstance(path, Export):
        return path
    if manifest is None:
        manifest = load_manifest(path, verify_hashes=verify_hashes)
    return Export(Path(manifest.root) if manifest.root is not None else Path(path), manifest)
