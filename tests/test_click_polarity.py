"""A click's polarity is a bool: anything else is refused before the decoder runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.errors import ClickError
from interformer_edge.runtime.session import ClickSession


@pytest.mark.parametrize("positive", [None, "no", "yes", 1, 0, 1.0, np.int64(1)])
def test_click_polarity_must_be_a_bool(light_export: Path, stored_features: Path, positive: object) -> None:
    session = ClickSession(Decoder(light_export, threads=1), stored_features)
    with pytest.raises(ClickError, match="positive must be True or False"):
        session.add_click(10, 10, positive=positive)  # type: ignore[arg-type]
    assert session.num_clicks == 0 and session.decoder_runs == 0
    session.add_click(10, 10, positive=np.bool_(False))  # numpy's bool is a bool
    assert session.clicks[0].is_positive is False
