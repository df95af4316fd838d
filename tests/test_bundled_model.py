"""The shipped SynthTalk model (checkpoints/synthtalk) really talks.

On the bundled held-out identity and speech (examples/synthtalk_*: seeds outside every training tree),
`edtalk generate` with the shipped weights must open the mouth when the speech is loud: how much the
lip region darkens in each generated frame (an open SynthTalk mouth shows its dark interior; the
region comes from the identity's lip landmarks) correlates with the speech's per-frame RMS (r >= 0.5).
An emotion preset must change the upper face (brows and eyes) while the mouth still follows the speech.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from edtalk.bundled import bundled_inputs, find_bundled_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "synthtalk"


@pytest.fixture(scope="module")
def shipped():
    model = find_bundled_model(SHIPPED)
    assert model is not None, f"the bundled model is missing: {SHIPPED}"
    return model


@pytest.fixture(scope="module")
def loudness():
    import soundfile as sf

    wav, rate = sf.read(str(bundled_inputs().speech), dtype="float32")
    frames = len(wav) // 640
    return np.sqrt((wav[:frames * 640].reshape(frames, 640) ** 2).mean(axis=1))


@pytest.fixture(scope="module")
def mouth_box():
    """The bundled identity's lip landmarks at the frontal pose of the bundled face, padded for the jaw drop."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_synthtalk_examples as examples
    from edtalk.data.synthtalk import render_frames

    identity = examples.bundled_identity()
    _, landmarks = render_frames(identity, np.zeros((1, 3), np.float32),
                                 np.array([[0, 0, 0, 0, 0, 1.0]], np.float32), np.zeros((1, 6), np.float32),
                                 np.zeros(1, np.float32), size=examples.FRAME_SIZE)
    lips = landmarks[0][48:68]
    (x0, y0), (x1, y1) = lips.min(axis=0), lips.max(axis=0)
    return int(x0) - 2, int(y0) - 2, int(x1) + 3, int(y1) + 6


def generate(shipped, out: Path, *extra) -> np.ndarray:
    from edtalk.cli import main
    from edtalk.video import read_video

    inputs = bundled_inputs()
    argv = ["generate", "--checkpoint", str(shipped.generator), "--audio2lip-checkpoint", str(shipped.audio2lip),
            "--checkpoint-dir", str(shipped.folder), "--presets", str(shipped.presets), "--no-crop",
            "--source", str(inputs.face), "--audio", str(inputs.speech), "--out", str(out), "--quiet", *extra]
    assert main(argv) == 0
    frames, _ = read_video(out)
    return frames


def mouth_darkness(frames: np.ndarray, box) -> np.ndarray:
    """Minus the mean luminance of the lip region, per frame: rises as the mouth opens."""
    x0, y0, x1, y1 = box
    return -frames[:, y0:y1, x0:x1].astype(np.float32).mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def neutral(shipped, tmp_path_factory):
    return generate(shipped, tmp_path_factory.mktemp("neutral") / "n.mp4", "--exp", "neutral")


@pytest.fixture(scope="module")
def happy(shipped, tmp_path_factory):
    return generate(shipped, tmp_path_factory.mktemp("happy") / "h.mp4", "--exp", "happy")


def test_the_measure_reads_mouth_opening_off_true_synthtalk_frames(loudness, mouth_box):
    # On frames rendered from the true mouth track of the bundled speech the measure is near perfect,
    # so a low correlation below is the model's, not the measure's.
    import make_synthtalk_examples as examples
    from edtalk.data.synthtalk import render_frames, sample_mouth

    n = len(loudness)
    mouth_rng, _ = np.random.default_rng(examples.SPEECH_SEED).spawn(2)
    frames, _ = render_frames(examples.bundled_identity(), sample_mouth(mouth_rng, n).astype(np.float32),
                              np.tile(np.array([[0, 0, 0, 0, 0, 1.0]], np.float32), (n, 1)),
                              np.zeros((n, 6), np.float32), np.zeros(n, np.float32), size=examples.FRAME_SIZE)
    assert np.corrcoef(mouth_darkness(frames, mouth_box), loudness)[0, 1] > 0.9


def test_mouth_opening_tracks_the_speech_loudness(neutral, loudness, mouth_box):
    opening = mouth_darkness(neutral[:len(loudness)], mouth_box)
    assert len(neutral) == len(loudness)
    assert opening.std() > 2.0, "the mouth never moves (lip-region luminance varies by under 2 grey levels)"
    assert np.corrcoef(opening, loudness)[0, 1] >= 0.5


def test_a_preset_changes_the_upper_face_while_the_mouth_follows_the_speech(neutral, happy, loudness, mouth_box):
    _, y0, _, _ = mouth_box
    upper = np.abs(happy[:, :y0 - 4].astype(np.float32) - neutral[:, :y0 - 4].astype(np.float32)).mean()
    assert upper > 1.0, f"the happy preset changes the brows/eyes by only {upper:.2f} grey levels"
    assert np.corrcoef(mouth_darkness(happy, mouth_box), loudness)[0, 1] >= 0.5


def test_the_no_argument_demo_runs_the_shipped_model_and_talks(tmp_path, monkeypatch, loudness, mouth_box):
    # `python demo.py` without released weights: the shipped model, mouth from the speech, head still, happy.
    from edtalk.bundled import BUNDLED_MODEL_ENV, RELEASED_WEIGHTS_ENV, default_demo
    from edtalk.cli import main
    from edtalk.video import read_video

    monkeypatch.setenv(RELEASED_WEIGHTS_ENV, str(tmp_path / "no_released_weights"))
    monkeypatch.delenv(BUNDLED_MODEL_ENV, raising=False)
    plan = default_demo(str(tmp_path / "demo.mp4"))
    assert str(SHIPPED) in plan.notice and "--audio" in plan.argv and "--pose" not in plan.argv
    assert main([*plan.argv, "--quiet"]) == 0
    frames, _ = read_video(tmp_path / "demo.mp4")
    assert np.corrcoef(mouth_darkness(frames[:len(loudness)], mouth_box), loudness)[0, 1] >= 0.5
