"""Test-wide settings: deterministic, two threads (the CI machine has two cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

# Helpers that live beside the tests (golden_weights.py) are imported by name.
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)
torch.manual_seed(0)
