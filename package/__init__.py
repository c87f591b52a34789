"""interformer-edge: InterFormer interactive segmentation on edge CPUs.

The repository's root folders (``models``, ``runtime``, ``export``, ``quantize``, ``bench``,
``training``, ``assets``) are installed as sub-packages of this import root.
"""

__version__ = "0.1.0"
