import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'edtalk[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'edtalk[onnx]')")


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory):
    """checkpoints/synthtalk exported by `edtalk export-onnx` itself, once per session (a minute or two)."""
    from edtalk.cli import main

    from onnx_helpers import SHIPPED

    out = tmp_path_factory.mktemp("onnx") / "synthtalk"
    assert main(["export-onnx", "--checkpoint-dir", str(SHIPPED), "--out", str(out), "--quiet"]) == 0
    return out
