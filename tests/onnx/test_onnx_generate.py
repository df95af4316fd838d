"""`edtalk generate --engine onnx`: the same video as the torch engine (PSNR >= 40 dB on the written
frames) in each mode, with the generator picked as torch picks it; usage mistakes are one line, exit 2."""
import math

import numpy as np
import pytest
from onnx_helpers import MIN_PSNR_DB, REPO, SHIPPED

from edtalk.bundled import bundled_inputs
from edtalk.cli import main

CASES = {
    "audio-driven, pose and expression predicted": ["--source", "{face}", "--audio", "{speech}", "--pose", "audio",
                                                    "--exp", "audio", "--exp-text", "what a wonderful day"],
    "video-driven, lip-pose model": ["--source", "{face}", "--lip", "{video}", "--exp", "none"],
    "dubbing with a preset": ["--source", "{video}", "--audio", "{speech}", "--exp", "happy"],
}
# The graphs each case must run (model folder, graph): the engine really is swapped.
GRAPHS = {
    "audio-driven, pose and expression predicted": {("EDTalk", "encoder"), ("EDTalk", "motion"),
                                                    ("EDTalk", "source_terms"), ("EDTalk", "expression_maps"),
                                                    ("EDTalk", "decoder"), ("Audio2Lip", "audio2lip"),
                                                    ("pose_flow", "audio2lip"), ("pose_flow", "pose_flow_step"),
                                                    ("audio2exp", "audio2lip"), ("audio2exp", "audio2exp")},
    "video-driven, lip-pose model": {("EDTalk_lip_pose", "encoder"), ("EDTalk_lip_pose", "motion"),
                                     ("EDTalk_lip_pose", "decoder")},
    "dubbing with a preset": {("EDTalk", "encoder"), ("EDTalk", "motion"), ("EDTalk", "source_terms"),
                              ("EDTalk", "expression_maps"), ("EDTalk", "decoder"), ("Audio2Lip", "audio2lip")},
}


@pytest.fixture
def graphs_run(monkeypatch):
    """(model folder, graph) of every onnxruntime call made."""
    from edtalk.onnx.runtime import _Graphs

    seen, original = set(), _Graphs.run

    def run(self, name, **inputs):
        seen.add((self.folder.name, name))
        return original(self, name, **inputs)

    monkeypatch.setattr(_Graphs, "run", run)
    return seen


def frames_of(folder):
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]).astype(np.float64)


def run(tmp_path, engine, args, onnx_dir, capsys):
    inputs = bundled_inputs()
    values = {"face": inputs.face, "speech": inputs.speech, "video": REPO / "examples" / "pose.mp4"}
    argv = ["generate", "--quiet", "--no-crop", "--checkpoint-dir", str(SHIPPED), "--engine", engine,
            "--onnx-dir", str(onnx_dir), "--out", str(tmp_path / f"{engine}.mp4"),
            "--save-frames", str(tmp_path / engine)] + [a.format(**values) for a in args]
    assert main(argv) == 0
    return capsys.readouterr().out, frames_of(tmp_path / engine)


@pytest.mark.parametrize("case", list(CASES))
def test_the_onnx_engine_writes_the_torch_engines_video(tmp_path, bundled_export, case, capsys, graphs_run):
    torch_out, torch_frames = run(tmp_path, "torch", CASES[case], bundled_export, capsys)
    assert not graphs_run
    onnx_out, onnx_frames = run(tmp_path, "onnx", CASES[case], bundled_export, capsys)
    assert graphs_run == GRAPHS[case]
    assert onnx_out.replace("onnx.mp4", "torch.mp4") == torch_out  # frames, mode and model variant
    assert onnx_frames.shape == torch_frames.shape and len(onnx_frames) > 10
    mse = ((onnx_frames - torch_frames) ** 2).mean()
    assert mse == 0 or 10 * math.log10(255 ** 2 / mse) >= MIN_PSNR_DB


@pytest.mark.parametrize("extra, message", [
    (["--engine", "onnx"], "needs --onnx-dir"),
    (["--engine", "onnx", "--onnx-dir", "{missing}"], "--onnx-dir not found"),
    (["--engine", "onnx", "--onnx-dir", "{not_export}"], "is not an ONNX export"),
    (["--engine", "onnx", "--onnx-dir", "{export}", "--dtype", "bf16"], "float32 graphs"),
])
def test_usage_mistakes_are_one_line_and_write_nothing(tmp_path, bundled_export, capsys, extra, message):
    inputs = bundled_inputs()
    values = {"missing": tmp_path / "nope", "not_export": SHIPPED, "export": bundled_export}
    out = tmp_path / "out.mp4"
    argv = ["generate", "--quiet", "--no-crop", "--source", str(inputs.face), "--audio", str(inputs.speech),
            "--out", str(out)] + [a.format(**values) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edtalk: error:") and message in err and "\n" not in err
    assert not out.exists()
