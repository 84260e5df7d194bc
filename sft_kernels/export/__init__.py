"""Exports: ONNX (standard ops for float and converted models, QDQ for int8 ones)."""
from .onnx import export_onnx

__all__ = ["export_onnx"]
