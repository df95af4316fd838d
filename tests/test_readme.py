"""The README's commands and API snippet stay true."""
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from edtalk.testing import write_tiny_checkpoints

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(section: str) -> str:
    text = README.read_text()
    part = text.split(f"## {section}", 1)[1]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def test_api_snippet_runs_on_tiny_official_files(tmp_path, monkeypatch):
    ckpts = write_tiny_checkpoints(tmp_path / "checkpoints")
    wav = tmp_path / "speech.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    code = python_block("Python API")
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
