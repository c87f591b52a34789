"""Steps 1 and 2 of a quantization: what every INT8 candidate is built from and judged on.

* calibration samples: decoder inputs of simulated click sessions on the calibration images
  (:mod:`.calibration`);
* references: the FP32 decoder's sessions on the held-out objects (:mod:`.gate`), shared by every
  candidate of every backend.

Both come from the export's FP32 graphs on ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from interformer_edge.core.dataset import EvalDataset, open_dataset
from interformer_edge.core.progress import ProgressReporter
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.export import Export, RuntimeSettings

from . import calibration, gate
from .options import QuantizeError, QuantizeOptions


@dataclass(frozen=True)
class QuantizeInputs:
    """Calibration samples, FP32 reference sessions, the folders they came from and what was skipped."""

    samples: list[calibration.DecoderSample]
    references: list[gate.ReferenceSession]
    calib_dir: Path
    heldout_dir: Path
    problems: list[str]

    @property
    def calibration_images(self) -> int:
        """How many calibration images gave samples."""
        return len({s.image_name for s in self.samples})


def _bundled(name: str) -> Path:
    from interformer_edge import assets

    return getattr(assets, name)


def _heldout_dir(options: QuantizeOptions) -> Path:
    return Path(options.heldout_dir) if options.heldout_dir is not None else _bundled("HELDOUT_DIR")


def open_heldout(options: QuantizeOptions) -> EvalDataset:
    """The held-out objects of the gate (raises :class:`QuantizeError` on a missing folder)."""
    try:
        return open_dataset(_heldout_dir(options), limit=options.gate_limit)
    except FileNotFoundError as err:
        raise QuantizeError(f"held-out set: {err}") from None


def prepare_inputs(export: Export, options: QuantizeOptions, progress: ProgressReporter) -> QuantizeInputs:
    """Read the calibration and held-out folders, simulate the calibration sessions and run the FP32
    reference sessions (raises :class:`QuantizeError` on unusable folders)."""
    calib_dir = Path(options.calib_dir) if options.calib_dir is not None else _bundled("CALIB_DIR")
    heldout_dir = _heldout_dir(options)
    if calib_dir.resolve() == heldout_dir.resolve():
        raise QuantizeError("the calibration and held-out folders must differ: the gate never uses calibration images")
    problems: list[str] = []
    try:
        calib_images = calibration.read_calibration_images(calib_dir, problems)
    except calibration.CalibrationError as err:
        raise QuantizeError(str(err)) from None
    heldout = open_heldout(options)
    fp32_settings = RuntimeSettings("onnxruntime", options.threads)
    encoder = export.encoder(fp32_settings)
    fp32 = export.decoder(fp32_settings)

    tick = progress.step("simulating calibration click sessions", options.num_sessions)
    try:
        samples = calibration.simulate_sessions(
            encoder, fp32, calib_images, options.num_sessions, options.calib_clicks, options.seed, tick
        )
    except calibration.CalibrationError as err:
        raise QuantizeError(str(err)) from None
    samples = calibration.subsample(samples, options.max_samples, options.seed)
    references, heldout_problems = reference_inputs(heldout, encoder, fp32, options.gate_clicks, progress)
    return QuantizeInputs(samples, references, calib_dir, heldout_dir, problems + heldout_problems)


def reference_inputs(
    heldout: EvalDataset, encoder: Encoder, fp32: Decoder, clicks: int, progress: ProgressReporter
) -> tuple[list[gate.ReferenceSession], list[str]]:
    """The FP32 reference sessions on the ``heldout`` objects (``clicks`` per session), and the held-out
    files that were skipped (raises :class:`QuantizeError` when no object is usable)."""
    tick = progress.step("encoding the held-out images", len(heldout))
    objects = []
    for index, sample in enumerate(heldout):
        objects.append(gate.GateObject(sample.name, encoder.encode(sample.image, name=sample.name), sample.mask))
        tick(index + 1)
    problems = [f"held-out {p}" for p in heldout.problems]
    if not objects:
        raise QuantizeError(f"no usable held-out objects in {heldout.root}")
    tick = progress.step("FP32 reference sessions", len(objects))
    return gate.reference_sessions(fp32, objects, clicks, tick), problems
