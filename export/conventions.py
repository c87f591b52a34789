"""The conventions a runtime must follow to use exported graphs, as an export records them: the metadata
stamped into every graph, and the manifest's ``preprocessing``, ``clicks`` and ``zoom_in`` sections.

All of it comes from :mod:`interformer_edge.core.spec` and the model's configuration.
"""

from __future__ import annotations

import json

import interformer_edge
from interformer_edge.core.manifest import ClickSettings, Preprocessing, ZoomSettings
from interformer_edge.core.spec import (
    CLICK_INNER_RADIUS,
    CLICK_OUTER_RADIUS,
    MANIFEST_FORMAT_VERSION,
    MAX_IMAGE_SIDE,
    PIXEL_MEAN,
    PIXEL_STD,
    REF_BACKGROUND,
    REF_FOREGROUND,
    REF_POSSIBLY_BACKGROUND,
    REF_POSSIBLY_FOREGROUND,
    REF_UNKNOWN,
    SIZE_DIVISOR,
    ZOOM_EXPAND_RATIO,
    ZOOM_MIN_SIZE,
    ZOOM_START_CLICK,
)
from interformer_edge.models import InterFormer


def common_metadata(model: InterFormer, static_size: tuple[int, int] | None, checkpoint_sha: str) -> dict[str, str]:
    """String facts stamped into every graph (each graph adds its role, signature and opset); the
    preprocessing ones are the manifest's :func:`preprocessing` section, for a reader with only a graph."""
    pre = preprocessing()
    low, high = pre.input_range
    return {
        "manifest_format_version": str(MANIFEST_FORMAT_VERSION),
        "version": interformer_edge.__version__,
        "architecture": json.dumps(model.cfg.to_dict()),
        "color_order": pre.color_order,
        "input_range": f"[{low:g}, {high:g}]",
        "pixel_mean": json.dumps(list(pre.mean)),
        "pixel_std": json.dumps(list(pre.std)),
        "size_divisor": str(pre.size_divisor),
        "max_image_side": str(pre.max_image_side),
        "uses_roi": json.dumps(model.cfg.has_refine),
        "static_size": "" if static_size is None else "{}x{}".format(*static_size),
        "source_checkpoint_sha256": checkpoint_sha,
    }


def preprocessing() -> Preprocessing:
    return Preprocessing(
        color_order="RGB",
        input_range=(0.0, 255.0),
        mean=PIXEL_MEAN,
        std=PIXEL_STD,
        size_divisor=SIZE_DIVISOR,
        max_image_side=MAX_IMAGE_SIDE,
        pad_value=0.0,
    )


def click_settings() -> ClickSettings:
    return ClickSettings(
        inner_radius=CLICK_INNER_RADIUS,
        outer_radius=CLICK_OUTER_RADIUS,
        ref_label_codes={
            "background": REF_BACKGROUND,
            "possibly_background": REF_POSSIBLY_BACKGROUND,
            "unknown": REF_UNKNOWN,
            "possibly_foreground": REF_POSSIBLY_FOREGROUND,
            "foreground": REF_FOREGROUND,
        },
    )


def zoom_settings(uses_roi: bool) -> ZoomSettings:
    return ZoomSettings(
        uses_roi=uses_roi,
        expand_ratio=ZOOM_EXPAND_RATIO,
        min_size=ZOOM_MIN_SIZE,
        stride=SIZE_DIVISOR,
        start_click=ZOOM_START_CLICK,
    )
