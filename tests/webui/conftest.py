from pathlib import Path

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


def png_header(width: int, height: int) -> bytes:
    """A PNG file that declares width x height pixels but holds almost no data: a decompression-bomb
    shaped upload, a few hundred bytes on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def huge_image(tmp_path):
    """A 20000x20000 PNG (400 megapixels), as small as a real file can be."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(20000, 20000))
    return path


@pytest.fixture(scope="session")
def short_speech(tmp_path_factory):
    """0.1 s of speech-like audio: the CLI makes 2 frames of it; the page asks for more."""
    sr = 16000
    t = np.arange(int(sr * 0.1)) / sr
    path = tmp_path_factory.mktemp("webui-short") / "short.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), sr)
    return path


@pytest.fixture(scope="session")
def synthtalk_speech(tmp_path_factory):
    """The first 0.8 s (20 frames) of the bundled SynthTalk speech."""
    source = Path(__file__).resolve().parents[2] / "examples" / "synthtalk_speech.wav"
    samples, sr = sf.read(str(source), dtype="int16")
    path = tmp_path_factory.mktemp("webui-synthtalk") / "synthtalk_speech_0.8s.wav"
    sf.write(path, samples[: int(0.8 * sr)], sr)
    return path
