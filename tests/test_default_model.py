"""The shipped default model really segments: held-out objects, the standard automatic clicker, the
torch-free runtime (what a user of the quick start gets).

Issue #3's bar: IoU >= 0.8 within 5 clicks on held-out images, read as the mean over objects after
the 5th click (the shipped model: 0.93 on these objects, all 16 reach 0.8 individually, 0.76 after
the first click; random weights give about 0.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interformer_edge.assets import HELDOUT_DIR
from interformer_edge.core.dataset import open_dataset
from interformer_edge.core.evaluation import run_session
from interformer_edge.runtime import ClickSession, Decoder, Encoder

OBJECTS = 16  # the first held-out objects (list order), never seen in training
CLICKS = 5
MIN_MEAN_IOU_AT_5 = 0.8


@pytest.mark.bundled_model
def test_default_model_segments_held_out_objects(default_export: tuple[Path, str]) -> None:
    export, which = default_export
    assert which == "default", "the bundled default checkpoint is missing"
    encoder, decoder = Encoder(export, threads=2), Decoder(export, threads=2)
    curves = []
    for sample in open_dataset(HELDOUT_DIR, limit=OBJECTS):
        session = ClickSession(decoder, encoder.encode(sample.image))
        curves.append(run_session(session.predict, sample.mask, max_clicks=CLICKS).ious)
    curves_array = np.asarray(curves)
    assert curves_array.shape == (OBJECTS, CLICKS)
    mean_per_click = curves_array.mean(axis=0)
    assert mean_per_click[-1] >= MIN_MEAN_IOU_AT_5, mean_per_click
    # A model that ignored the clicks after the first would keep its first mask (0.76 -> 0.93 here).
    assert mean_per_click[-1] > mean_per_click[0] + 0.1, "clicks must improve the masks"
