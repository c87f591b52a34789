"""Deterministic, checkpoint-free weights for the golden tests.

The golden ``.npz`` files in ``tests/goldens/`` were produced by running the official
InterFormer code with every floating-point tensor of its ``state_dict`` replaced by
:func:`golden_value`. The npz files hold no weights: a test rebuilds them here, key by key,
from the key name and shape alone (the keys carry no ``module.`` prefix).

The rule depends only on numpy (``default_rng`` seeded with the CRC-32 of the key), so it
gives the same values on every machine and numpy version that keeps PCG64 and
``standard_normal`` stable.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

_SMALL_KEYS = ("relative_position_bias_table", "pos_embed", "cls_token")


def golden_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return the float32 golden value of the state-dict entry ``key`` with ``shape``.

    - ``running_var``: ``1 + 0.2 |n|``; ``running_mean``: ``0.1 n``;
    - relative position bias tables, ``pos_embed``, ``cls_token``: ``0.1 n``;
    - other 1-D ``weight`` (norm weights): ``1 + 0.1 n``; other 1-D tensors: ``0.1 n``;
    - everything else: ``n / sqrt(prod(shape[1:]))``,

    where ``n`` is float64 standard normal noise from ``default_rng(crc32(key))``.
    """
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    n = rng.standard_normal(shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        v = 1.0 + 0.2 * np.abs(n)
    elif leaf == "running_mean" or any(s in key for s in _SMALL_KEYS):
        v = 0.1 * n
    elif len(shape) == 1 and leaf == "weight":
        v = 1.0 + 0.1 * n
    elif len(shape) == 1:
        v = 0.1 * n
    else:
        v = n / np.sqrt(np.prod(shape[1:]))
    return np.asarray(v, dtype=np.float32)


def fill_state_dict(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Replace every floating-point tensor of ``sd`` by :func:`golden_value`.

    ``sd`` maps keys to numpy arrays or anything ``np.asarray`` accepts (e.g. CPU torch
    tensors). Integer tensors (``relative_position_index``, ``num_batches_tracked``) are
    returned unchanged, as numpy arrays.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating):
            out[key] = golden_value(key, arr.shape)
        else:
            out[key] = arr.copy()
    return out
