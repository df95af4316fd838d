"""The README's commands and API snippet stay true."""
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from edtalk.testing import write_tiny_checkpoints
from edtalk.video import probe_video

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def python_blocks(section: str) -> list:
    text = README.read_text()
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", part, re.S)


def test_api_pipeline_snippet_runs_on_the_bundled_model(tmp_path, monkeypatch):
    code = python_blocks("Python API")[0]
    assert "EDTalkPipeline.from_pretrained" in code
    code = code.replace('"checkpoints/', f'"{REPO}/checkpoints/').replace('"examples/', f'"{REPO}/examples/')
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    res = scope["res"]
    assert res.frames.shape == (100, 64, 64, 3) and res.frames.dtype == np.uint8 and res.fps == 25
    info = probe_video(tmp_path / "results" / "happy.mp4")
    assert (info["frames"], info["audio"]) == (100, True)
    assert scope["pipe"].loads == {"EDTalk": 1, "Audio2Lip": 1, "pose_flow": 1, "presets": 1}


def test_api_network_snippet_runs_on_tiny_official_files(tmp_path, monkeypatch):
    ckpts = write_tiny_checkpoints(tmp_path / "checkpoints")
    wav = tmp_path / "speech.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    code = python_blocks("Python API")[1]
    code = code.replace('"checkpoints/', f'"{ckpts["EDTalk.pt"].parent}/').replace('"examples/speech.wav"', f'"{wav}"')
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert tuple(scope["frames"].shape) == (4, 3, 64, 64)
    assert tuple(scope["model"].bases().shape) == (64, 36)
    assert (tmp_path / "my_model" / "model.safetensors").is_file()


def test_readme_opens_with_setup_and_test_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    lines = [ln for ln in first_block.splitlines() if ln and not ln.startswith("#")]
    assert lines[0].startswith("bash scripts/setup.sh") and "demo.py" in lines[0]
    ci = (README.parent / ".ci" / "run").read_text()
    assert lines[1] in ci, "CI must run exactly the README's test command"
