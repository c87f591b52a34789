"""Tracing the two InterFormer halves to ONNX, simplifying them and stamping their metadata.

The model computes every shape-dependent quantity as a tensor expression, so the legacy TorchScript
exporter with ``dynamic_axes`` gives one graph for every image size (``dynamo=False`` on purpose: the
dynamo exporter specialises on the example shapes). Graph signatures live in :func:`encoder_signature`
and :func:`decoder_signature`; the manifest copies them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import onnx
import torch

from interformer_edge.core.manifest import TensorSpec
from interformer_edge.core.spec import (
    CONTEXT_NAMES,
    FEATURE_NAMES,
    FEATURE_STRIDES,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    REF_LABEL_INPUT,
    ROI_INPUT,
)
from interformer_edge.models import ClickDecoder, ImageContext, ImageEncoder, InterFormer

# A protobuf message cannot exceed 2 GiB; keep a margin for the graph itself.
PROTOBUF_LIMIT = 2**31 - 64 * 2**20
# Size used to trace dynamic graphs: non-square and not 1024 tokens, so nothing size-specific looks constant.
TRACE_SIZE = (320, 480)
METADATA_PREFIX = "interformer_edge."


def _dims(size: tuple[int, int] | None, stride: int) -> tuple[int | str, int | str]:
    if size is None:
        return ("H", "W") if stride == 1 else (f"H/{stride}", f"W/{stride}")
    return size[0] // stride, size[1] // stride


def feature_specs(model: InterFormer, size: tuple[int, int] | None) -> tuple[TensorSpec, ...]:
    """``feat_i`` ``(1, C_i, H/s_i, W/s_i)`` float32 for strides 4, 8, 16, 32."""
    return tuple(
        TensorSpec(name, "float32", (1, channels, *_dims(size, stride)))
        for name, channels, stride in zip(FEATURE_NAMES, model.cfg.fpn_dims, FEATURE_STRIDES, strict=True)
    )


def encoder_signature(model: InterFormer, size: tuple[int, int] | None) -> tuple[tuple[TensorSpec, ...], ...]:
    """(inputs, outputs) of ``encoder.onnx``: ``image (1, 3, H, W)`` float32 → ``feat0..feat3``."""
    return (TensorSpec(IMAGE_INPUT, "float32", (1, 3, *_dims(size, 1))),), feature_specs(model, size)


def context_specs(model: InterFormer, size: tuple[int, int] | None) -> tuple[TensorSpec, ...]:
    """``ctx_i`` ``(1, N_i, 2 C_i)`` float32; ``N_i`` (pooled pixels of level ``i``) follows H, W nonlinearly,
    so it is named even for a static size (the runtime reads it from the context graph's output)."""
    return tuple(
        TensorSpec(name, "float32", (1, f"{name}_tokens", 2 * channels))
        for name, channels in zip(CONTEXT_NAMES, model.cfg.fpn_dims, strict=True)
    )


def context_signature(model: InterFormer, size: tuple[int, int] | None) -> tuple[tuple[TensorSpec, ...], ...]:
    """(inputs, outputs) of ``context.onnx``: ``feat0..feat3`` → ``ctx0..ctx3``, once per image."""
    return feature_specs(model, size), context_specs(model, size)


def decoder_signature(model: InterFormer, size: tuple[int, int] | None) -> tuple[tuple[TensorSpec, ...], ...]:
    """(inputs, outputs) of ``decoder.onnx``.

    Inputs ``feat0``, ``ctx0..ctx3`` (the image's context), ``ref_label (1, 1, H, W)`` uint8 codes
    0..4 and, for models with refine stages only, ``roi (1, 4)`` int64 (left, up, right, bottom;
    multiples of 32; the whole image means no zoom-in). Output ``logits (1, num_classes, H, W)``
    float32 at the padded size.
    """
    inputs = [
        feature_specs(model, size)[0],
        *context_specs(model, size),
        TensorSpec(REF_LABEL_INPUT, "uint8", (1, 1, *_dims(size, 1))),
    ]
    if model.cfg.has_refine:
        inputs.append(TensorSpec(ROI_INPUT, "int64", (1, 4)))
    outputs = (TensorSpec(LOGITS_OUTPUT, "float32", (1, model.cfg.num_classes, *_dims(size, 1))),)
    return tuple(inputs), outputs


def signature(model: InterFormer, role: str, size: tuple[int, int] | None) -> tuple[tuple[TensorSpec, ...], ...]:
    """(inputs, outputs) of graph ``role``: ``encoder``, ``context`` or ``decoder``."""
    signatures = {"encoder": encoder_signature, "context": context_signature, "decoder": decoder_signature}
    return signatures[role](model, size)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's deprecation chatter and tracer warnings (they are expected, not actionable)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamic_axes(specs: tuple[TensorSpec, ...]) -> dict[str, dict[int, str]]:
    return {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}


def _trace_inputs(
    model: InterFormer, size: tuple[int, int]
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """A deterministic example image, its features and the decoder inputs they yield (roi: an interior,
    non-trivial box)."""
    height, width = size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=generator)
    with torch.no_grad():
        features = tuple(model.encode(image))
        context = tuple(model.neck.image_context(features))
    ref_label = torch.randint(0, 5, (1, 1, height, width), generator=generator, dtype=torch.uint8)
    decoder_args: tuple[torch.Tensor, ...] = (features[0], *context, ref_label)
    if model.cfg.has_refine:
        # A strict sub-box (when the size allows) so the crop/paste path is traced as a real crop.
        step = FEATURE_STRIDES[-1]  # rois are multiples of the coarsest stride
        right = max(step, (width // 2) // step * step)
        bottom = max(step, (height // 2) // step * step)
        left = step if right > step else 0
        decoder_args = (*decoder_args, torch.tensor([[left, 0, right, bottom]], dtype=torch.int64))
    return image, features, decoder_args


def trace_to_onnx(model: InterFormer, role: str, path: Path, opset: int, static_size: tuple[int, int] | None) -> None:
    """Export ``role`` (``encoder``/``context``/``decoder``) of ``model`` to ``path`` (unsimplified).

    Dynamic H/W unless ``static_size`` is given; then the graph only accepts that size.
    """
    size = static_size or TRACE_SIZE
    image, features, decoder_args = _trace_inputs(model, size)
    if role == "encoder":
        module: torch.nn.Module = ImageEncoder(model).eval()
        args: tuple[torch.Tensor, ...] = (image,)
        inputs, outputs = encoder_signature(model, static_size)
    elif role == "context":
        module = ImageContext(model).eval()
        args = features
        inputs, outputs = context_signature(model, static_size)
    elif role == "decoder":
        module = ClickDecoder(model).eval()
        args = decoder_args
        inputs, outputs = decoder_signature(model, static_size)
    else:
        raise ValueError(f"unknown graph role {role!r}")
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes=_dynamic_axes(inputs + outputs),  # a static size leaves only the context lengths named
        )


def set_io_shapes(proto: onnx.ModelProto, specs: tuple[TensorSpec, ...]) -> None:
    """Overwrite the declared shapes of graph inputs/outputs with ``specs`` (tracing invents names like
    ``Mulfeat0_dim_0`` for the batch axis; the runtime should see the manifest's names)."""
    by_name = {s.name: s for s in specs}
    for value in [*proto.graph.input, *proto.graph.output]:
        spec = by_name.get(value.name)
        if spec is None:
            continue
        shape = value.type.tensor_type.shape
        shape.ClearField("dim")
        for d in spec.shape:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


def set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Replace the ``interformer_edge.*`` entries of ``metadata_props`` by ``metadata`` (keys without prefix)."""
    kept = [p for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = value
    proto.producer_name = "interformer-edge"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``interformer_edge.*`` metadata of an ONNX file (keys without prefix), without loading weights."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len(METADATA_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)}


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def save(proto: onnx.ModelProto, path: Path) -> list[Path]:
    """Save as one file when it fits in a protobuf (< 2 GiB), else with one external ``<name>.data`` file.

    Returns the files written.
    """
    data_path = path.with_name(path.name + ".data")
    data_path.unlink(missing_ok=True)
    if proto.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(proto, str(path))
        return [path]
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_path.name,
        size_threshold=1024,
    )
    return [path, data_path]


def stamp_and_save(
    proto: onnx.ModelProto, specs: tuple[TensorSpec, ...], metadata: Mapping[str, str], path: Path
) -> list[Path]:
    """:func:`set_io_shapes`, :func:`set_metadata`, then :func:`save` (returns the files written)."""
    set_io_shapes(proto, specs)
    set_metadata(proto, metadata)
    return save(proto, path)


def simplify(proto: onnx.ModelProto, lift_bytes: int | None = 4096) -> onnx.ModelProto:
    """onnxslim with dynamic shapes kept (no input shapes are fixed): constant folding, dead-code and
    common-subexpression elimination, fusion of shape arithmetic. Rewrites ``proto`` in place and
    returns it.

    Float initializers larger than ``lift_bytes`` (the weights) are hidden from onnxslim as typed graph
    inputs: onnxslim copies every tensor several times (4 GiB peak and 38 s for the 360 MiB Light
    encoder, which would not fit 8 GiB for Tiny), while the weights take part in no simplification the
    exporter has not already folded. With them hidden: +0.1 GiB and 4 s, same graph. The simplified
    structure is then spliced back into ``proto`` around its own weights, so they are never copied.
    ``lift_bytes=None`` hides nothing: for the small click-side graphs, whose weight arithmetic
    (PatchMerging's kernel sums and folded bias) onnxslim then folds into constants.
    """
    import onnxslim
    from onnx import TensorProto, helper

    graph = proto.graph
    lifted = {
        i.name
        for i in graph.initializer
        if lift_bytes is not None and i.data_type == TensorProto.FLOAT and len(i.raw_data) > lift_bytes
    }
    skeleton = _without_initializers(proto)
    skeleton.graph.initializer.extend(i for i in graph.initializer if i.name not in lifted)
    skeleton.graph.input.extend(
        helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in graph.initializer if i.name in lifted
    )
    with _quiet_export():
        slim = onnxslim.slim(skeleton)
    del skeleton
    used = {name for node in slim.graph.node for name in node.input}
    # Keep the weights the slim graph still uses, in place; take everything else from the slim graph.
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in lifted or graph.initializer[index].name not in used:
            del graph.initializer[index]
    graph.initializer.extend(slim.graph.initializer)
    for field_name in ("node", "value_info", "output"):
        graph.ClearField(field_name)
        getattr(graph, field_name).extend(getattr(slim.graph, field_name))
    graph.ClearField("input")
    graph.input.extend(i for i in slim.graph.input if i.name not in lifted)
    proto.ClearField("opset_import")
    proto.opset_import.extend(slim.opset_import)
    proto.ir_version = slim.ir_version
    return proto


def _without_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose graph has no initializers, built field by field so that the weights
    are never touched (``CopyFrom`` would duplicate them; detaching them from a repeated field may too)."""
    skeleton = onnx.ModelProto()
    _copy_fields(proto, skeleton, skip=("graph",))
    _copy_fields(proto.graph, skeleton.graph, skip=("initializer", "sparse_initializer"))
    return skeleton


def _copy_fields(src: Any, dst: Any, skip: tuple[str, ...]) -> None:
    for field, value in src.ListFields():
        if field.name in skip:
            continue
        if hasattr(value, "extend"):  # a repeated field (descriptor labels differ across protobuf versions)
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def graph_metadata(
    role: str, common: Mapping[str, str], inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> dict[str, str]:
    """String key/value facts stored in the graph itself (ONNX ``metadata_props`` / OpenVINO ``rt_info``)."""

    def io(specs: tuple[TensorSpec, ...]) -> str:
        return json.dumps([{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs])

    return {"role": role, **common, "inputs": io(inputs), "outputs": io(outputs)}
