"""The inputs every latency row and the memory probe use: a bundled photo at the benchmark size and a
realistic click.

Timing on random tensors would be legal but unlike use: the decoder sees a reference label with
click disks and a folded-in prediction, and models with refine stages crop a zoom-in roi around the
object. So the timed decoder call is "the third click" of a real session on the photo: two clicks
are made (positive in the centre, then a negative one), and the third click's decoder input — its
reference label and roi — is what every row times, the same for every backend and precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from interformer_edge.core.clicks import Click, add_click
from interformer_edge.core.evaluation import Roi, zoom_roi_padded
from interformer_edge.core.preprocess import pad_ref_label
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

BENCH_PHOTO = "astronaut.jpg"  # 512x512, the largest of the bundled photos


def bench_photo(size: tuple[int, int]) -> np.ndarray:
    """The bundled photo resized to exactly ``size`` ``(H, W)``: ``(H, W, 3)`` uint8 RGB.

    Without the assets (a stripped install), a smooth synthetic picture of the same size.
    """
    from interformer_edge.assets import PHOTOS_DIR

    height, width = size
    path = Path(PHOTOS_DIR) / BENCH_PHOTO
    if path.is_file():
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], axis=-1)
    return rgb.astype(np.uint8)


def click_points(height: int, width: int, count: int) -> list[tuple[int, int, bool]]:
    """``count`` deterministic clicks ``(y, x, positive)``: the centre (positive), then alternately
    negative and positive ones on a spiral around it, all inside the image."""
    points = [(height // 2, width // 2, True)]
    for index in range(1, count):
        angle = index * 2.39996  # golden angle: spread out, never repeating
        radius = 0.12 + 0.3 * (index % 7) / 7
        y = int(np.clip(height / 2 + radius * height * np.sin(angle), 0, height - 1))
        x = int(np.clip(width / 2 + radius * width * np.cos(angle), 0, width - 1))
        points.append((y, x, index % 2 == 0))
    return points


@dataclass(frozen=True)
class ClickCase:
    """The decoder input of one click, without the features: ``ref_label`` ``(1, 1, Hp, Wp)`` uint8 on the
    padded canvas and the zoom-in ``roi`` (None: the whole canvas / no refine stages)."""

    ref_label: np.ndarray
    roi: Roi | None


def third_click(decoder: Decoder, features: ImageFeatures) -> ClickCase:
    """The decoder input of the third click of a session on ``features`` (see the module docstring)."""
    session = ClickSession(decoder, features)
    (y0, x0, p0), (y1, x1, p1), (y2, x2, p2) = click_points(session.height, session.width, 3)
    session.add_click(y0, x0, p0)
    session.add_click(y1, x1, p1)
    clicks = decoder.manifest.clicks
    ref_in = add_click(session.ref_label, Click(y2, x2, p2), clicks.inner_radius, clicks.outer_radius)
    roi = None
    zoom = decoder.manifest.zoom_in
    if session.zoom_in and session.num_clicks >= zoom.start_click:
        # features are encoded at full size here, so the session's mask is its prediction
        roi = zoom_roi_padded(session.mask, ref_in, zoom.stride, zoom.expand_ratio, zoom.min_size)
    return ClickCase(pad_ref_label(ref_in, features.meta.padded_size, dtype=np.uint8), roi)
