from pathlib import Path

import numpy as np

from edtalk import examples

REPO = Path(__file__).resolve().parents[2]


def test_pose_frames_are_deterministic_and_move_smoothly():
    a = examples.pose_frames(num_frames=10)
    b = examples.pose_frames(num_frames=10)
    assert a.shape == (10, 256, 256, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    step = np.abs(np.diff(a.astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert (step > 0.5).all() and (step < 20).all()  # moving, gently


def test_synth_speech_is_deterministic_speech_like():
    x = examples.synth_speech(3.0)
    np.testing.assert_array_equal(x, examples.synth_speech(3.0))
    assert x.shape == (48000,) and x.dtype == np.float32
    assert abs(np.abs(x).max() - 0.8) < 1e-6
    # Syllabic envelope: 40 ms energy varies strongly (voiced peaks vs gaps).
    energy = (x[: 48000 // 640 * 640].reshape(-1, 640) ** 2).mean(1)
    assert energy.max() > 20 * np.percentile(energy, 10)


def test_make_examples_writes_expected_files(tmp_path):
    from PIL import Image
    from scipy.io import wavfile

    from edtalk.video import probe_video

    paths = examples.make_examples(tmp_path, engine="synth")
    assert np.asarray(Image.open(paths["source.png"])).shape == (256, 256, 3)
    assert np.asarray(Image.open(paths["source_full.png"])).shape == (512, 512, 3)
    info = probe_video(paths["pose.mp4"])
    assert info["video"] and not info["audio"] and info["frames"] == 75 and abs(info["duration"] - 3.0) < 0.05
    rate, pcm = wavfile.read(paths["speech.wav"])
    assert rate == 16000 and pcm.ndim == 1 and abs(len(pcm) / rate - 3.0) < 0.01
    # Deterministic: the committed crop is what the generator makes.
    np.testing.assert_array_equal(np.asarray(Image.open(paths["source.png"])),
                                  np.asarray(Image.open(REPO / "examples" / "source.png")))


def test_committed_examples_are_small_and_well_formed():
    from scipy.io import wavfile

    from edtalk.video import probe_video

    folder = REPO / "examples"
    names = ["source.png", "source_full.png", "pose.mp4", "speech.wav", "README.md"]
    assert all((folder / n).is_file() for n in names)
    assert sum((folder / n).stat().st_size for n in names) < 1_000_000
    assert probe_video(folder / "pose.mp4")["frames"] == 75
    rate, pcm = wavfile.read(folder / "speech.wav")
    assert rate == 16000 and pcm.ndim == 1 and 2.0 < len(pcm) / rate < 5.0
