import numpy as np
import pytest
import soundfile as sf

from edtalk import presets
from edtalk.testing import write_tiny_checkpoints

SPEECH_SECONDS = 0.48  # → 12 frames at 25 fps


@pytest.fixture(autouse=True)
def official_presets(monkeypatch):
    """The official preset table, whatever an earlier test (or the CLI's --presets) chose."""
    monkeypatch.delenv(presets.PRESETS_ENV, raising=False)
    presets.use_preset_dir(None)


@pytest.fixture(scope="session")
def tiny_ckpt_dir(tmp_path_factory):
    ckpts = write_tiny_checkpoints(tmp_path_factory.mktemp("webui-ckpt"))
    return next(iter(ckpts.values())).parent


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """0.48 s of speech-like audio (a 180 Hz tone with a 4 Hz syllable envelope)."""
    sr = 16000
    t = np.arange(int(sr * SPEECH_SECONDS)) / sr
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    path = tmp_path_factory.mktemp("webui-media") / "speech.wav"
    sf.write(path, wav, sr)
    return path


@pytest.fixture
def not_an_image(tmp_path):
    """A text file named like an image: passes the extension filter, fails the content check."""
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n" * 20)
    return path
