"""The shared core: what every other folder (and the device) builds on; numpy + Pillow, never torch.

Constants and names of the exported graphs (``spec``), image and reference-label preprocessing, the
click protocol (reference-label encoding, the official evaluation and training clickers), the
evaluation loop and its metrics, the artifact manifest, host facts (CPU class, peak memory, package
versions) and small utilities (atomic writes, progress lines, sizes, timing). It imports nothing
from the other folders; ``runtime`` (the device's inference) and everything else import it.
"""
