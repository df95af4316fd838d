"""`edtalk export-onnx`: what it writes (opset, dynamic batch, metadata, presets) and how it refuses bad input."""
import json

import onnx
import pytest
from onnx_helpers import SHIPPED

from edtalk.cli import main
from edtalk.onnx import METADATA_FILE, OPSET

EXPECTED_GRAPHS = {
    "EDTalk": {"encoder", "motion", "source_terms", "expression_maps", "decoder"},
    "EDTalk_lip_pose": {"encoder", "motion", "decoder"},
    "Audio2Lip": {"audio2lip"},
    "pose_flow": {"audio2lip", "pose_flow_step"},
    "audio2exp": {"audio2lip", "audio2exp"},
}


def test_every_network_of_the_bundled_folder_is_exported(bundled_export):
    metadata = json.loads((bundled_export / METADATA_FILE).read_text())
    assert metadata["opset"] == OPSET
    assert {name: set(entry["graphs"]) for name, entry in metadata["models"].items()} == EXPECTED_GRAPHS
    assert metadata["models"]["EDTalk"]["config"]["size"] == 64  # the bundled model's own config
    assert sorted(p.name for p in (bundled_export / "presets").iterdir()) == \
        sorted(p.name for p in (SHIPPED / "presets").iterdir())


def test_each_graph_has_the_stated_opset_and_a_dynamic_batch(bundled_export):
    metadata = json.loads((bundled_export / METADATA_FILE).read_text())
    for name, entry in metadata["models"].items():
        for graph in entry["graphs"].values():
            model = onnx.load(str(bundled_export / name / graph["file"]), load_external_data=False)
            assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
            inputs = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
            assert list(inputs) == graph["inputs"]
            for input_name, axes in graph["dynamic_axes"].items():
                for axis in axes:
                    dim = inputs[input_name][int(axis)]
                    assert dim.dim_param and not dim.dim_value, f"{name}/{graph['file']}: {input_name}[{axis}] is fixed"


def test_an_existing_folder_that_is_not_an_export_is_left_alone(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["export-onnx", "--checkpoint-dir", str(SHIPPED), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edtalk: error:") and "not an earlier ONNX export" in err and "\n" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_folder_without_a_generator_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export-onnx", "--checkpoint-dir", str(empty), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no EDTalk generator" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_an_opset_below_the_supported_one_is_refused(tmp_path, capsys):
    assert main(["export-onnx", "--checkpoint-dir", str(SHIPPED), "--out", str(tmp_path / "o"), "--opset", "11"]) == 2
    assert f"--opset must be {OPSET}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["", "not json", json.dumps({"format": 99})])
def test_a_folder_that_is_not_a_readable_export_is_a_clear_error(tmp_path, content):
    from edtalk.errors import CheckpointError
    from edtalk.onnx.runtime import read_metadata

    if content:
        (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(CheckpointError, match="export"):
        read_metadata(tmp_path)
