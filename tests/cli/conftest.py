import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from edtalk.testing import write_tiny_checkpoints
from edtalk.video import write_video


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Small inputs: a face image, a 30 fps driver video with sound, speech-like audio."""
    import skimage.data

    root = tmp_path_factory.mktemp("media")
    face = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.BICUBIC))
    Image.fromarray(face).save(root / "face.png")
    sr = 16000
    t = np.arange(int(sr * 1.3)) / sr  # 1.3 s → 32 frames at 25 fps
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    sf.write(root / "speech.wav", speech, sr)
    sf.write(root / "speech_44k.wav", np.repeat(np.interp(np.arange(int(len(speech) * 44100 / sr)) * sr / 44100,
                                                          np.arange(len(speech)), speech)[:, None], 2, 1), 44100)
    frames = np.stack([np.roll(face, int(4 * np.sin(i / 4)), axis=1) for i in range(24)])  # 0.8 s at 30 fps
    write_video(root / "driver30.mp4", frames, fps=30, audio=speech[: int(0.8 * sr)], sample_rate=sr)
    return {k: root / v for k, v in {"face": "face.png", "speech": "speech.wav", "speech44": "speech_44k.wav",
                                      "driver": "driver30.mp4"}.items()} | {"root": root}
