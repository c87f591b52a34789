"""interformer-edge: InterFormer interactive segmentation on edge CPUs.

This folder is only the import root: setuptools installs each of the repository's root folders as
a sub-package of it (``pyproject.toml``, ``[tool.setuptools.package-dir]``). Dependencies point one
way (``tests/test_layering.py`` enforces it):

* ``core``: constants, click protocol, evaluation, manifest, host facts; imports no other folder.
* ``runtime``: on-device inference (ONNX Runtime / OpenVINO), feature store, ``interformer-encode``;
  imports ``core`` only.
* ``models``: the PyTorch port; imports ``core``. ``training``: its synthetic training; imports ``core``,
  ``models``.
* ``export``: imports ``core``, ``runtime``, ``models``. ``quantize``: imports ``core``, ``runtime`` (it uses
  exported graphs). ``bench``: imports ``core``, ``runtime``, and ``models``/``export`` only inside functions.
* ``annotate``: the web annotator and its CVAT / Label Studio endpoints; imports ``core``, ``runtime``.
"""

__version__ = "0.1.0"
