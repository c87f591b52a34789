"""Single source of truth for the numbers every part of the toolkit must agree on.

Nothing here imports torch: the model port, the exporters and the on-device runtime all read these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Input normalization of the official models (RGB, 0..255 scale).
PIXEL_MEAN: Final[tuple[float, float, float]] = (123.675, 116.28, 103.53)
PIXEL_STD: Final[tuple[float, float, float]] = (58.395, 57.12, 57.375)

# Images are zero-padded bottom/right to a multiple of this (the largest feature stride).
SIZE_DIVISOR: Final[int] = 32
# Cumulative strides of the four feature maps (FPN levels and I-MSA stages).
FEATURE_STRIDES: Final[tuple[int, int, int, int]] = (4, 8, 16, 32)
FEATURE_CHANNELS: Final[tuple[int, int, int, int]] = (32, 64, 128, 256)
# Largest padded image side the click decoder supports (its pooling-size tables are sized for it).
MAX_IMAGE_SIDE: Final[int] = 4096
# Longest side the runtime encodes at unless asked otherwise: larger photos are shrunk to it and their
# masks scaled back. It keeps the standard benchmarks (GrabCut, Berkeley, DAVIS 480p: at most 854 px)
# at full size, is twice the official 512-px training crop, and bounds the encoder's memory (which
# grows with the fourth power of the side: about 1.2 GiB for the default model at 1024 px, see
# runtime/memory.py).
DEFAULT_MAX_SIDE: Final[int] = 1024

# Reference-label codes: one value per pixel, fed to the click decoder.
REF_BACKGROUND: Final[int] = 0  # definite background (inside a negative click)
REF_POSSIBLY_BACKGROUND: Final[int] = 1
REF_UNKNOWN: Final[int] = 2
REF_POSSIBLY_FOREGROUND: Final[int] = 3
REF_FOREGROUND: Final[int] = 4  # definite foreground (inside a positive click)
NUM_REF_LABELS: Final[int] = 5

# Click encoding and zoom-in defaults of the official demo / evaluation.
CLICK_INNER_RADIUS: Final[int] = 5
CLICK_OUTER_RADIUS: Final[int] = 0
ZOOM_EXPAND_RATIO: Final[float] = 1.4
ZOOM_MIN_SIZE: Final[int] = 32
ZOOM_START_CLICK: Final[int] = 1  # zoom-in from the second click on (0-based click index >= 1)

# Evaluation protocol.
EVAL_MAX_CLICKS: Final[int] = 20

# Artifact file names inside an export folder.
MANIFEST_NAME: Final[str] = "manifest.json"
ENCODER_ONNX: Final[str] = "encoder.onnx"
CONTEXT_ONNX: Final[str] = "context.onnx"
DECODER_ONNX: Final[str] = "decoder.onnx"
ENCODER_OV: Final[str] = "encoder.xml"
CONTEXT_OV: Final[str] = "context.xml"
DECODER_OV: Final[str] = "decoder.xml"
DECODER_INT8_ONNX: Final[str] = "decoder.int8.onnx"
DECODER_INT8_OV: Final[str] = "decoder.int8.xml"
# The three exported graphs in pipeline order (each one's outputs feed the next; encoder and context
# run once per image, decoder once per click), the formats each is written in, and the file of each
# (role, format): the one table of graph file names.
GRAPH_ROLES: Final[tuple[str, str, str]] = ("encoder", "context", "decoder")
GRAPH_FORMATS: Final[tuple[str, str]] = ("onnx", "openvino")
GRAPH_FILES: Final[Mapping[tuple[str, str], str]] = {
    ("encoder", "onnx"): ENCODER_ONNX,
    ("context", "onnx"): CONTEXT_ONNX,
    ("decoder", "onnx"): DECODER_ONNX,
    ("encoder", "openvino"): ENCODER_OV,
    ("context", "openvino"): CONTEXT_OV,
    ("decoder", "openvino"): DECODER_OV,
}
# Section of an OpenVINO IR's rt_info that holds our metadata (the ONNX files use metadata_props).
OPENVINO_RT_INFO_SECTION: Final[str] = "interformer_edge"

# Export folder layout and graph signatures (shared by the exporter, the runtime, quantize and bench).
# Version 2: the click side is two graphs, the per-image context and the per-click decoder.
MANIFEST_FORMAT_VERSION: Final[int] = 2
DEFAULT_OPSET: Final[int] = 17  # first opset with LayerNormalization; what ONNX Runtime on a Pi reliably runs
IMAGE_INPUT: Final[str] = "image"  # (1, 3, H, W) float32, normalized RGB
FEATURE_NAMES: Final[tuple[str, str, str, str]] = ("feat0", "feat1", "feat2", "feat3")
# Per-image context of the click side: (1, N_i, 2 C_i) float32 key/value tokens of I-MSA stage i's first block.
CONTEXT_NAMES: Final[tuple[str, str, str, str]] = ("ctx0", "ctx1", "ctx2", "ctx3")
# The decoder's per-image inputs: the finest feature map and the context.
CLICK_IMAGE_INPUTS: Final[tuple[str, ...]] = (FEATURE_NAMES[0], *CONTEXT_NAMES)
REF_LABEL_INPUT: Final[str] = "ref_label"  # (1, 1, H, W) uint8 codes 0..4
ROI_INPUT: Final[str] = "roi"  # (1, 4) int64 left, up, right, bottom (only for models with refine stages)
LOGITS_OUTPUT: Final[str] = "logits"  # (1, 2, H, W) float32 at the padded size; mask = logits[1] > logits[0]
# Name prefix of the OpenVINO decoder's operations that resize the logits (kept float by the INT8 quantizer).
LOGITS_RESIZE_SCOPE: Final[str] = "logits_resize"
