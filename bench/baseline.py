"""The PyTorch eager baseline: the model port run the way the official code runs it.

Only used when torch is importable *and* the export's source checkpoint can be found with the sha256
the manifest records (its recorded path, else the bundled default if it is that checkpoint): a
baseline of another model would make every speed-up meaningless. torch and ``interformer_edge.models``
are imported inside this module's functions only, so the benchmark runs without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.evaluation import Roi
from interformer_edge.core.manifest import Manifest, sha256_file


def torch_problem() -> str | None:
    """Why the baseline cannot run here (torch or the model port missing), or None."""
    try:
        import torch  # noqa: F401

        import interformer_edge.models  # noqa: F401
    except ImportError as err:
        return f"torch is not installed ({err.name or err}); the PyTorch eager baseline needs the workstation extra"
    return None


def find_checkpoint(manifest: Manifest) -> tuple[Path | None, str]:
    """The export's source checkpoint, verified by sha256: ``(path, how it was found)`` or ``(None, why not)``."""
    source = manifest.source_checkpoint
    candidates = [Path(source.path)]
    try:
        from interformer_edge.assets import DEFAULT_CHECKPOINT

        candidates.append(Path(DEFAULT_CHECKPOINT))
    except ImportError:
        pass
    tried = []
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            tried.append(f"{path} (missing)")
            continue
        if path.stat().st_size == source.size and sha256_file(path) == source.sha256:
            return path, f"{path} (sha256 matches the manifest)"
        tried.append(f"{path} (another checkpoint)")
    return None, "the export's source checkpoint was not found with its sha256: " + "; ".join(tried)


class TorchBaseline:
    """The eager model of ``checkpoint`` on the CPU, float32, no autograd.

    ``encode``/``decode`` take the same numpy inputs as the exported graphs (``(1, 3, H, W)`` float32
    image; ``(1, 1, H, W)`` reference label on the padded canvas, any integer or float type; roi) and do
    what the graphs do: the decoder's logits are upsampled to ``(1, 2, H, W)``.
    """

    def __init__(self, checkpoint: Path) -> None:
        import torch

        from interformer_edge.models import load_interformer

        self._torch = torch
        self.model = load_interformer(checkpoint).eval()
        self.uses_roi = bool(self.model.cfg.has_refine)

    def set_threads(self, threads: int) -> None:
        self._torch.set_num_threads(int(threads))

    def encode(self, image: np.ndarray) -> Any:
        with self._torch.no_grad():
            return self.model.encode(self._torch.from_numpy(image))

    def decode_input(self, ref_label: np.ndarray, roi: Roi | None) -> tuple[Any, Any]:
        """Torch tensors for :meth:`decode` (converted once, outside the timed call)."""
        ref = self._torch.from_numpy(np.ascontiguousarray(ref_label, dtype=np.float32))
        box = self._torch.tensor(roi, dtype=self._torch.int64) if roi is not None and self.uses_roi else None
        return ref, box

    def decode(self, features: Any, ref: Any, roi: Any) -> Any:
        from interformer_edge.models import upsample_logits

        with self._torch.no_grad():
            return upsample_logits(self.model.decode(features, ref, roi), *ref.shape[2:])

    def predictor(self, image: np.ndarray) -> Any:
        """A :class:`~interformer_edge.models.predictor.TorchPredictor` for one ``(H, W, 3)`` uint8 image
        (encodes it now); ``.logits(ref_label, roi)`` gives ``(2, H, W)``."""
        from interformer_edge.models.predictor import TorchPredictor

        return TorchPredictor(self.model, image)
