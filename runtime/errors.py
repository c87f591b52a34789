"""Exceptions of the torch-free runtime; each message is one line that says what to do.

Catch :class:`InterFormerRuntimeError` for anything the runtime itself refuses. Unreadable or
unusable images raise :class:`~interformer_edge.core.image_io.ImageReadError` (also a
``ValueError``), and a broken export folder raises ``manifest.ManifestError``.
"""

from __future__ import annotations


class InterFormerRuntimeError(Exception):
    """Base class of the runtime's own errors."""


class BackendError(InterFormerRuntimeError):
    """No usable inference backend, an unknown option, or a graph that failed to load or run."""


class FeatureFileError(InterFormerRuntimeError, ValueError):
    """A feature file is missing, truncated, corrupt or not a feature file of this format version."""


class ModelMismatchError(InterFormerRuntimeError, ValueError):
    """Features (or an option) do not fit the model they are used with."""


class ClickError(InterFormerRuntimeError, ValueError):
    """A click outside the image, or an undo with nothing to undo."""


class MemoryBudgetError(InterFormerRuntimeError, MemoryError):
    """Encoding an image this large would need more memory than the machine has available."""
