"""The click side: a session holds one image's features and its click history; one decoder run per click.

>>> from interformer_edge.runtime import ClickSession, Decoder, Encoder
>>> features = Encoder("export/").encode("photo.jpg", max_side=1024)
>>> session = ClickSession(Decoder("export/", threads=2), features)   # runs the per-image context once
>>> mask = session.add_click(120, 200, positive=True)     # (H, W) bool at the photo's own size
>>> mask = session.add_click(40, 300, positive=False)
>>> mask = session.undo()                                   # back to the one-click mask, no decoder run

One click follows the official evaluation (and :func:`.evaluation.run_session`) exactly:

1. the click's disk is merged into the reference label (:func:`.clicks.add_click`);
2. from click index ``zoom_in.start_click`` on (the second click) and for models with refine stages,
   the zoom-in roi is computed from the previous prediction and this reference label on the padded
   canvas (:func:`.evaluation.zoom_roi_padded`); otherwise the roi input gets the whole canvas;
3. the decoder runs once; ``mask = logits[1] > logits[0]``;
4. the prediction is folded into the reference label (:func:`.clicks.update_ref_label_with_prediction`).

Everything happens at the *encoded* size (the image after the optional ``max_side`` downscale).
Clicks are given in original-image pixels and mapped to the encoded grid by pixel centre. Masks go
back to the original size by bilinear resizing of the logit difference ``logits[1] - logits[0]``
(half-pixel centres, as PyTorch's ``align_corners=False``) and thresholding at 0, which equals
resizing both logits and comparing them; for an image encoded at full size the mask is the
decoder's own.

Undo: each click's decoder input (reference label, compressed), roi and prediction (bit-packed)
stay in the history, about ``h*w/8`` bytes plus a few KB per click; the logits of the last
``undo_cache`` clicks (4 bytes a pixel each) are kept too. ``undo`` restores the previous state from
the history without a decoder run; only when undoing further back than ``undo_cache`` clicks is the
decoder run once to recompute that state's logits from its stored inputs (the decoder is
deterministic, so the result is the same).

The arrays returned (``mask``, ``ref_label``) are read-only views of the session state.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interformer_edge.core.clicks import Click, add_click, initial_ref_label, update_ref_label_with_prediction
from interformer_edge.core.evaluation import Roi, zoom_roi_padded
from interformer_edge.core.manifest import BASE_PRECISION
from interformer_edge.core.preprocess import pad_ref_label, resize_bilinear
from interformer_edge.core.spec import NUM_REF_LABELS

from .decoder import Decoder
from .errors import ClickError, ModelMismatchError
from .features import ImageFeatures, load_features


@dataclass(frozen=True)
class _Step:
    """What undo needs of one click, compactly: the decoder's inputs and its prediction."""

    roi: Roi | None
    ref_in: bytes  # zlib of the (h, w) uint8 reference label fed to the decoder
    pred: bytes  # np.packbits of the (h, w) bool prediction


class ClickSession:
    """Interactive segmentation of one image (see the module docstring for the protocol).

    Args:
        decoder: a loaded :class:`Decoder`.
        features: :class:`ImageFeatures` or the path of a feature file (checked against the decoder's model).
        zoom_in: use the zoom-in roi (default: when the model has refine stages, as the official
            evaluation). Asking for it on a model without refine stages raises ModelMismatchError.
        undo_cache: how many recent clicks keep their logits for an exact undo without a decoder run.

    Attributes:
        clicks: the clicks so far, in original-image pixels.
        decoder_runs: decoder passes made by this session (one per click, see undo).
        roi: the roi of the last click (None: whole canvas).
    """

    def __init__(
        self,
        decoder: Decoder,
        features: ImageFeatures | str | Path,
        zoom_in: bool | None = None,
        undo_cache: int = 8,
    ) -> None:
        if not isinstance(features, ImageFeatures):
            features = load_features(features, decoder.model_id)
        decoder.check(features)
        if zoom_in and not decoder.uses_roi:
            raise ModelMismatchError("this model has no refine stages, so it cannot zoom in")
        self.decoder = decoder
        self.meta = features.meta
        self.zoom_in = decoder.uses_roi if zoom_in is None else bool(zoom_in)
        self.undo_cache = max(0, undo_cache)
        self._feed = decoder.image_inputs(features)  # once per image, not per click
        self.height, self.width = self.meta.original_size
        self._model_size = self.meta.encoded_size
        self._zoom = decoder.manifest.zoom_in
        self._radii = (decoder.manifest.clicks.inner_radius, decoder.manifest.clicks.outer_radius)
        self.decoder_runs = 0
        self.reset()

    @classmethod
    def open(
        cls,
        export_dir: str | Path,
        features: ImageFeatures | str | Path,
        backend: str = "auto",
        threads: int | None = None,
        precision: str = "f32",
        zoom_in: bool | None = None,
        variant: str = BASE_PRECISION,
    ) -> ClickSession:
        """Load the export's decoder and start a session (load a :class:`Decoder` once to share it instead)."""
        return cls(Decoder(export_dir, backend, threads, precision, variant=variant), features, zoom_in=zoom_in)

    # ------------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget every click (no decoder run): empty mask, all-unknown reference label."""
        self.clicks: list[Click] = []
        self.roi: Roi | None = None
        self._history: list[_Step] = []
        self._logits_cache: list[np.ndarray | None] = []  # per step: (h, w) logit difference, or dropped
        self._ref = initial_ref_label(self._model_size)
        self._ref.setflags(write=False)
        self._pred = np.zeros(self._model_size, dtype=bool)
        self._diff: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    @property
    def num_clicks(self) -> int:
        return len(self.clicks)

    @property
    def ref_label(self) -> np.ndarray:
        """``(h, w)`` uint8 reference label at the encoded size, after the last prediction was folded in."""
        return self._ref

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool object mask at the original image size (all False before the first click)."""
        if self._mask is None:
            if self._diff is None:
                self._mask = np.zeros((self.height, self.width), dtype=bool)
            elif self._model_size == (self.height, self.width):
                self._mask = self._pred
            else:
                self._mask = resize_bilinear(self._diff, (self.height, self.width)) > 0
            self._mask.setflags(write=False)
        return self._mask

    @property
    def logit_difference(self) -> np.ndarray | None:
        """``(h, w)`` float32 ``logits[1] - logits[0]`` at the encoded size (None before the first click);
        ``mask`` is its bilinear resize to ``(H, W)`` thresholded at 0."""
        return self._diff

    @property
    def probability(self) -> np.ndarray:
        """``(H, W)`` float32 object probability (softmax of the two logits), 0.5 before the first click."""
        if self._diff is None:
            return np.full((self.height, self.width), 0.5, dtype=np.float32)
        diff = resize_bilinear(self._diff, (self.height, self.width))
        return (1.0 / (1.0 + np.exp(-diff))).astype(np.float32)

    # ----------------------------------------------------------------------------------- clicks

    def _to_model(self, y: int, x: int) -> tuple[int, int]:
        """Original-image pixel → encoded-grid pixel (by pixel centre)."""
        model_h, model_w = self._model_size
        if (model_h, model_w) == (self.height, self.width):
            return y, x
        return min(model_h - 1, int((y + 0.5) * model_h / self.height)), min(
            model_w - 1, int((x + 0.5) * model_w / self.width)
        )

    def add_click(self, y: int, x: int, positive: bool = True) -> np.ndarray:
        """Click at pixel ``(y, x)`` of the original image; returns the new ``(H, W)`` bool mask.

        Raises:
            ClickError: the click lies outside the image or is not an integer pixel, or ``positive``
                is not a bool.
        """
        if (
            isinstance(y, (bool, np.bool_))
            or isinstance(x, (bool, np.bool_))
            or not (isinstance(y, (int, np.integer)) and isinstance(x, (int, np.integer)))
        ):
            raise ClickError(f"click coordinates must be integer pixels, got ({y!r}, {x!r})")
        if not isinstance(positive, (bool, np.bool_)):  # "no" or None must not pass as a truth value
            raise ClickError(f"positive must be True or False, got {positive!r}")
        y, x = int(y), int(x)
        if not (0 <= y < self.height and 0 <= x < self.width):
            raise ClickError(f"click ({y}, {x}) lies outside the {self.height}x{self.width} image")
        click = Click(y, x, bool(positive))
        model_y, model_x = self._to_model(y, x)
        ref_in = add_click(self._ref, Click(model_y, model_x, click.is_positive), *self._radii)
        roi = None
        if self.zoom_in and len(self.clicks) >= self._zoom.start_click:
            roi = zoom_roi_padded(self._pred, ref_in, self._zoom.stride, self._zoom.expand_ratio, self._zoom.min_size)
        diff = self._decode(ref_in, roi)
        pred = diff > 0  # == logits[1] > logits[0]: a float difference is 0 only for equal values
        self._history.append(_Step(roi, zlib.compress(ref_in.tobytes(), 1), np.packbits(pred).tobytes()))
        self._logits_cache.append(diff)
        if len(self._logits_cache) > self.undo_cache:  # keep memory flat over long sessions
            self._logits_cache[-self.undo_cache - 1] = None
        self.clicks.append(click)
        self._set_state(ref_in, pred, diff, roi)
        return self.mask

    def _decode(self, ref_in: np.ndarray, roi: Roi | None) -> np.ndarray:
        """``(h, w)`` float32 logit difference ``logits[1] - logits[0]`` at the encoded size."""
        padded = pad_ref_label(ref_in, self.meta.padded_size, dtype=np.uint8)
        logits = self.decoder.run(self._feed, padded, roi)
        self.decoder_runs += 1
        model_h, model_w = self._model_size
        return logits[0, 1, :model_h, :model_w] - logits[0, 0, :model_h, :model_w]

    def _set_state(self, ref_in: np.ndarray, pred: np.ndarray, diff: np.ndarray, roi: Roi | None) -> None:
        self._ref = update_ref_label_with_prediction(ref_in, pred)
        for array in (self._ref, pred):  # handed out as properties: nobody may edit the state through them
            array.setflags(write=False)
        self._pred, self._diff, self.roi, self._mask = pred, diff, roi, None

    def undo(self) -> np.ndarray:
        """Remove the last click and return the mask as it was before it (see the module docstring).

        Raises:
            ClickError: there is no click to undo.
        """
        if not self._history:
            raise ClickError("nothing to undo")
        self._history.pop()
        self._logits_cache.pop()
        self.clicks.pop()
        if not self._history:
            self.reset()
            return self.mask
        step = self._history[-1]
        shape = self._model_size
        ref_in = np.frombuffer(zlib.decompress(step.ref_in), dtype=np.uint8).reshape(shape)
        count = shape[0] * shape[1]
        pred = np.unpackbits(np.frombuffer(step.pred, dtype=np.uint8), count=count).reshape(shape).astype(bool)
        diff = self._logits_cache[-1]
        if diff is None:  # older than the cache: recompute (deterministic, so the same logits)
            diff = self._logits_cache[-1] = self._decode(ref_in, step.roi)
        self._set_state(ref_in, pred, diff, step.roi)
        return self.mask

    # ------------------------------------------------------------------------ evaluation adapter

    def predict(self, ref_label: np.ndarray, roi: Roi | None = None) -> np.ndarray:
        """A :data:`.evaluation.Predictor`: one stateless decoder run for an externally managed reference label.

        ``ref_label`` ``(H, W)`` uint8 at the image size, ``roi`` on the padded canvas or None; returns
        the ``(H, W)`` bool mask. The session's own clicks and history are untouched. Works for
        images encoded at full size only (the evaluation protocol never rescales).

        >>> result = run_session(session.predict, gt, zoom_in=decoder.uses_roi)
        """
        if self._model_size != (self.height, self.width):
            raise ModelMismatchError("predict needs features encoded at full size (max_side left unset)")
        ref_label = np.asarray(ref_label)
        if ref_label.shape != self._model_size:
            raise ModelMismatchError(f"ref_label has shape {ref_label.shape}, the image is {self._model_size}")
        if ref_label.dtype.kind not in "biu" or not (ref_label.min() >= 0 and ref_label.max() < NUM_REF_LABELS):
            raise ClickError(f"ref_label must hold integer codes 0..{NUM_REF_LABELS - 1} (got {ref_label.dtype})")
        return self._decode(ref_label.astype(np.uint8), roi) > 0
