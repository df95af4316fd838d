"""ONNX export of the EDTalk networks and an onnxruntime engine for `edtalk generate --engine onnx`.

:mod:`edtalk.onnx.export` writes the graphs (`edtalk export-onnx`); :mod:`edtalk.onnx.runtime`
runs them behind the torch networks' interface. onnx / onnxruntime are optional
(`pip install 'edtalk[onnx]'`): importing this package needs neither.
"""
from .export import METADATA_FILE, OPSET, export_onnx

__all__ = ["OPSET", "METADATA_FILE", "export_onnx"]
