"""The click side of an export, loaded once: the per-image context graph and the per-click decoder.

:class:`Decoder` is shared by any number of :class:`~.session.ClickSession` objects (one per image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from interformer_edge.core.cpu import check_int8_target
from interformer_edge.core.evaluation import Roi
from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.core.spec import CONTEXT_NAMES, FEATURE_NAMES, LOGITS_OUTPUT, REF_LABEL_INPUT, ROI_INPUT

from .backends import Graph, SpecializedGraph, load_graph
from .errors import ModelMismatchError
from .export import DEFAULT_COMPUTE, Export, RuntimeSettings, compute_from, open_export
from .features import ImageFeatures, check_finite, check_shapes, check_sizes


class Decoder:
    """The click side of one export folder, loaded once and shared by any number of sessions.

    Two graphs: the context (run once per image by :meth:`image_inputs`: the part of the click side
    that depends on the features only) and the decoder (run once per click by :meth:`run`).

    Args:
        export_dir: folder with ``manifest.json`` and the graph files, or an opened :class:`~.export.Export`.
        backend, threads, compute: see :mod:`.export` (``precision=`` is compute's old, deprecated name).
        graph_file: another decoder file of the export to run instead, relative to ``export_dir``;
            its format picks the backend (the context graph is the export's, on the same backend).
        manifest: an already loaded manifest; verify: check artifact hashes when loading it.
        variant: ``"fp32"`` (the exported decoder) or a quantized variant of the export (``"int8"``,
            written by ``interformer-quantize``); the backend then runs that variant's file.
        static_shapes: compile the decoder for each image size it meets (the last ``static_sizes``
            kept): faster clicks, paid once per size when a :class:`ClickSession` opens (see
            :class:`~.backends.SpecializedGraph`). Off by default: a stream of differently sized
            images (evaluation, calibration) would compile for each one. A server whose sessions
            use more sizes at once than it keeps compiles again and again: give it more.
    """

    def __init__(
        self,
        export_dir: str | Path | Export,
        backend: str = "auto",
        threads: int | None = None,
        compute: str = DEFAULT_COMPUTE,
        graph_file: str | Path | None = None,
        manifest: Manifest | None = None,
        verify: bool = True,
        variant: str = BASE_PRECISION,
        static_shapes: bool = False,
        static_sizes: int = 2,
        *,
        precision: str | None = None,
    ) -> None:
        self.export = open_export(export_dir, verify, manifest)
        self.manifest = self.export.manifest
        settings = RuntimeSettings(backend, threads, compute_from(compute, precision, "Decoder"))
        if graph_file is None:
            self.graph = self.export.graph("decoder", settings, variant, static_shapes, static_sizes)
        else:
            self.graph = load_graph(
                self.export.root / graph_file,
                "decoder",
                backend,
                threads,
                settings.compute,
                specialize=static_shapes,
                keep_sizes=static_sizes,
            )
        # The context is always the exported FP32 graph: it runs once per image, so INT8 would buy nothing.
        self.context = self.export.graph("context", replace(settings, backend=self.graph.backend))
        self.model_id = self.export.model_id
        quantized = self.manifest.quantized_variant("decoder", variant) if graph_file is None else None
        # The INT8 target the running variant was quantized for (None for the exported FP32 graph).
        self.target = quantized.target if quantized is not None else None
        if quantized is not None:
            check_int8_target(quantized.target, quantized.covers, f"{variant} decoder")
        self.uses_roi = self.manifest.zoom_in.uses_roi
        if self.uses_roi != (ROI_INPUT in self.graph.input_names):
            raise ModelMismatchError(
                f"{self.graph.path.name} {'lacks' if self.uses_roi else 'has'} a roi input, "
                f"but the manifest says uses_roi={self.uses_roi}"
            )
        specs = {t.name: t.shape for t in self.manifest.graphs["context"].inputs}
        self.channels = {name: specs[name][1] for name in FEATURE_NAMES if name in specs}

    @property
    def backend(self) -> str:
        return self.graph.backend

    def check(self, features: ImageFeatures) -> None:
        """Refuse features of another model (or with other channel counts or canvas) with
        :class:`ModelMismatchError`, and features whose metadata contradicts the maps or that hold
        NaN/inf with :class:`FeatureFileError` (in-memory features get the checks a file gets at load)."""
        where = f"features of {features.meta.image_name or 'the image'}"
        features.check_model(self.model_id)
        check_sizes(features.meta, where)
        check_shapes(features, where)
        for name, channels in self.channels.items():
            got = features.maps[name].shape[1]
            if isinstance(channels, int) and got != channels:
                raise ModelMismatchError(f"{name} has {got} channels, the decoder expects {channels}")
        limit = self.manifest.preprocessing.max_image_side
        if max(features.meta.padded_size) > limit:
            raise ModelMismatchError(
                f"{where} are on a {features.meta.padded_size} canvas, larger than this model's {limit}-px limit"
            )
        static = self.manifest.static_size
        if static is not None and features.meta.padded_size != static:
            raise ModelMismatchError(
                f"{where} are on a {features.meta.padded_size} canvas, this static-size decoder takes {static}"
            )
        check_finite(features, where)

    def image_inputs(self, features: ImageFeatures) -> dict[str, np.ndarray]:
        """The decoder's per-image inputs: ``feat0`` and the context ``ctx0..ctx3`` (one context run).

        With ``static_shapes`` the decoder is also compiled for this canvas now, not at the first click.
        """
        inputs = context_inputs(self.context, features.float32_maps())
        if isinstance(self.graph, SpecializedGraph):
            shapes = {name: value.shape for name, value in inputs.items()}
            shapes[REF_LABEL_INPUT] = (1, 1, *features.meta.padded_size)
            if self.uses_roi:
                shapes[ROI_INPUT] = (1, 4)
            self.graph.prepare(shapes)
        return inputs

    def run(self, feed: dict[str, np.ndarray], ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        """One decoder pass.

        Args:
            feed: the image's inputs (:meth:`image_inputs`).
            ref_label: ``(1, 1, Hp, Wp)`` uint8 codes on the padded canvas.
            roi: ``(left, up, right, bottom)`` on the canvas, or None for the whole canvas (no zoom-in);
                ignored by models without refine stages.

        Returns:
            logits ``(1, 2, Hp, Wp)`` float32.
        """
        return self.graph.run(self.graph_inputs(feed, ref_label, roi))[LOGITS_OUTPUT]

    def graph_inputs(
        self, feed: dict[str, np.ndarray], ref_label: np.ndarray, roi: Roi | None
    ) -> dict[str, np.ndarray]:
        """The decoder graph's input dict for :meth:`run`'s arguments."""
        inputs = dict(feed)
        inputs[REF_LABEL_INPUT] = ref_label
        if self.uses_roi:
            box = roi if roi is not None else (0, 0, ref_label.shape[3], ref_label.shape[2])
            inputs[ROI_INPUT] = np.asarray([box], dtype=np.int64)
        return inputs


def context_inputs(context: Graph, maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The decoder's per-image inputs from float32 maps ``feat0..feat3``: ``feat0`` and the ``context``
    graph's ``ctx0..ctx3`` (one context run)."""
    out = context.run({name: maps[name] for name in FEATURE_NAMES})
    return {FEATURE_NAMES[0]: maps[FEATURE_NAMES[0]], **{name: out[name] for name in CONTEXT_NAMES}}
