"""Torch-free runtime: numpy + ONNX Runtime / OpenVINO. Never import torch or ``models`` here."""
