"""One loaded model, many threads: encoders, context and click decoders shared by concurrent sessions.

The annotator server answers every tab's clicks from one :class:`Decoder` (and one :class:`Encoder`)
in worker threads. Here 8 threads start together (a barrier) and each encodes an image, opens a
:class:`ClickSession` and clicks three times; every result must equal the same work done in one
thread, bit for bit: the backends run the same kernels with one thread, whichever infer request or
thread runs them. With ``static_shapes`` the images come in three canvas sizes, one more than the
decoder keeps compiled, so graphs are compiled, evicted and compiled again while others run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image

from interformer_edge.core.spec import REF_LABEL_INPUT
from interformer_edge.runtime import ClickSession, Decoder, Encoder, load_graph
from interformer_edge.runtime.backends import SpecializedGraph
from interformer_edge.runtime.features import ImageFeatures

T = TypeVar("T")

THREADS = 8
# (height, width, seed): three canvas sizes, and one image (index 0 and 3) shared by several threads.
IMAGES = [(96, 128, 0), (64, 96, 1), (70, 90, 2), (96, 128, 0)]
Click = tuple[int, int, bool]  # (y, x, positive)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random ``(height, width, 3)`` uint8 RGB image (as tests/test_runtime.py makes them)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))


def plan(index: int) -> tuple[np.ndarray, list[Click]]:
    """Thread ``index``'s image and its three clicks (threads on the same image click elsewhere)."""
    height, width, seed = IMAGES[index % len(IMAGES)]
    clicks = [
        (height // 2 + index % 3, width // 2 - index, True),
        (3 + index, 4 + 2 * index, False),
        (height - 6 - index, width // 3 + index, True),
    ]
    return photo(height, width, seed), clicks


def annotate(encoder: Encoder, decoder: Decoder, index: int) -> tuple[ImageFeatures, ClickSession]:
    """Encode thread ``index``'s image and click through its plan."""
    image, clicks = plan(index)
    features = encoder.encode(image)
    session = ClickSession(decoder, features)
    for y, x, positive in clicks:
        session.add_click(y, x, positive)
    return features, session


def run_together(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(0..count-1)`` in ``count`` threads released at once; re-raises the first error of any thread."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = work(index)
        except BaseException as err:  # re-raised in the main thread below
            errors.append(err)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every slot was filled: no thread failed


@pytest.mark.parametrize("static_shapes", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_concurrent_sessions_on_one_decoder_equal_sequential_ones(
    light_export: Path, backend: str, static_shapes: bool
) -> None:
    encoder = Encoder(light_export, backend, threads=1)
    decoder = Decoder(light_export, backend, threads=1, static_shapes=static_shapes)
    together = run_together(THREADS, lambda index: annotate(encoder, decoder, index))
    for index, (features, session) in enumerate(together):
        alone_features, alone = annotate(encoder, decoder, index)  # the same work, one thread, one at a time
        for name, values in alone_features.maps.items():
            np.testing.assert_array_equal(features.maps[name], values, err_msg=f"thread {index}: {name}")
        assert session.decoder_runs == alone.decoder_runs == 3
        np.testing.assert_array_equal(session.logit_difference, alone.logit_difference, err_msg=f"thread {index}")
        np.testing.assert_array_equal(session.mask, alone.mask, err_msg=f"thread {index}")
        np.testing.assert_array_equal(session.ref_label, alone.ref_label, err_msg=f"thread {index}")
    if static_shapes:
        assert isinstance(decoder.graph, SpecializedGraph) and decoder.graph.compiled == 2  # never more than kept


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_shape_asked_for_by_many_threads_at_once_is_compiled_once(light_export: Path, backend: str) -> None:
    graph = load_graph(light_export, "decoder", backend, threads=1, specialize=True)
    assert isinstance(graph, SpecializedGraph)
    decoder = Decoder(light_export, backend, threads=1)
    features = Encoder(light_export, backend, threads=1).encode(photo(64, 96))
    shapes = {name: value.shape for name, value in decoder.image_inputs(features).items()}
    shapes[REF_LABEL_INPUT] = (1, 1, *features.meta.padded_size)
    compiled = run_together(THREADS, lambda _: graph.prepare(shapes))
    assert all(g is compiled[0] for g in compiled)  # one graph, handed to every thread
    assert graph.compiled == 1
