"""`python demo.py` with no arguments: the released weights when they are there, else the bundled
SynthTalk model on the bundled SynthTalk face and speech (one line says so), else one error line.

The bundled model is stood in for by the tiny chain of scripts/train_synthtalk_model.py (about a
minute, once per session); the released weights are hidden by pointing $EDTALK_CHECKPOINTS at an
empty folder and running from a folder without checkpoints/."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edtalk.bundled import BUNDLED_MODEL_ENV, RELEASED_WEIGHTS_ENV, bundled_inputs, default_demo
from edtalk.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo.py"
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


@pytest.fixture(scope="session")
def tiny_bundled_model(tiny_synthtalk_model) -> Path:
    """A folder in the bundled model's layout, from the tiny preset of the training chain."""
    return tiny_synthtalk_model["out"]


def run_demo(cwd: Path, *args, released: Path, bundled: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", RELEASED_WEIGHTS_ENV: str(released), BUNDLED_MODEL_ENV: str(bundled)}
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def no_released_weights(tmp_path) -> Path:
    empty = tmp_path / "no_checkpoints"
    empty.mkdir()
    return empty


def test_no_arguments_runs_the_bundled_model_and_says_so(tiny_bundled_model, no_released_weights, tmp_path):
    import soundfile as sf

    from edtalk.video import read_video

    result = run_demo(tmp_path, released=no_released_weights, bundled=tiny_bundled_model)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    notices = [line for line in result.stdout.splitlines() if line.startswith("demo:")]
    assert len(notices) == 1 and "bundled SynthTalk model" in notices[0] and "cartoon faces only" in notices[0]
    frames, fps = read_video(tmp_path / "results" / "demo.mp4")
    speech_samples = sf.info(str(bundled_inputs().speech)).frames
    assert fps == 25 and len(frames) == speech_samples // SAMPLES_PER_FRAME == 100


def test_bundled_face_has_the_bundled_model_frame_size(tiny_bundled_model):
    from PIL import Image

    from edtalk import EDTalk

    size = EDTalk.from_pretrained(tiny_bundled_model / "EDTalk").config.size
    assert Image.open(bundled_inputs().face).size == (size, size)


def test_no_weights_at_all_is_one_error_line(no_released_weights, tmp_path):
    result = run_demo(tmp_path, released=no_released_weights, bundled=tmp_path / "no_bundled_model")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edtalk: error: no weights") and "edtalk download" in lines[0]
    assert not (tmp_path / "results").exists()


def test_help_still_forwards_to_generate(tmp_path):
    result = run_demo(tmp_path, "--help", released=tmp_path, bundled=tmp_path)
    assert result.returncode == 0 and "--source" in result.stdout and "--checkpoint-dir" in result.stdout


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_released_weights_win_over_the_bundled_model(tmp_path, monkeypatch):
    released, bundled = tmp_path / "released", tmp_path / "bundled"
    for name in ("EDTalk.pt", "Audio2Lip.pt"):
        touch(released / name)
    for name in ("EDTalk.pt", "Audio2Lip.pt", "pose_flow/config.json", "presets/happy.npy"):
        touch(bundled / name)
    monkeypatch.setenv(RELEASED_WEIGHTS_ENV, str(released))
    monkeypatch.setenv(BUNDLED_MODEL_ENV, str(bundled))
    plan = default_demo()
    argv = plan.argv
    assert argv[argv.index("--checkpoint-dir") + 1] == str(released)
    assert Path(argv[argv.index("--source") + 1]).name == "source_full.png" and "released" in plan.notice


def test_bundled_model_may_hold_saved_model_folders(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    for name in ("EDTalk/config.json", "Audio2Lip/config.json", "pose_flow/config.json", "presets/happy.npy"):
        touch(bundled / name)
    monkeypatch.setenv(RELEASED_WEIGHTS_ENV, str(tmp_path / "none"))
    monkeypatch.setenv(BUNDLED_MODEL_ENV, str(bundled))
    argv = default_demo("x.mp4").argv
    assert argv[argv.index("--checkpoint") + 1] == str(bundled / "EDTalk")
    assert argv[argv.index("--audio2lip-checkpoint") + 1] == str(bundled / "Audio2Lip")
    assert "--pose" not in argv and "--no-crop" in argv and argv[-1] == "x.mp4"


def test_incomplete_bundled_model_names_what_is_missing(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    touch(bundled / "EDTalk.pt")
    monkeypatch.setenv(RELEASED_WEIGHTS_ENV, str(tmp_path / "none"))
    monkeypatch.setenv(BUNDLED_MODEL_ENV, str(bundled))
    with pytest.raises(CheckpointError, match=r"incomplete: missing Audio2Lip\.pt .*pose_flow/, presets/happy\.npy"):
        default_demo()


def test_bundled_inputs_are_small_native_size_and_regenerate_identically(tmp_path):
    import soundfile as sf
    from PIL import Image

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from make_synthtalk_examples import FRAME_SIZE, write_examples
    finally:
        sys.path.remove(str(REPO / "scripts"))
    committed = bundled_inputs()
    assert committed.face.stat().st_size + committed.speech.stat().st_size < 200 * 1024
    fresh = write_examples(tmp_path)
    face = np.asarray(Image.open(committed.face))
    assert face.shape == (FRAME_SIZE, FRAME_SIZE, 3) and np.array_equal(face, np.asarray(Image.open(fresh["face"])))
    speech, rate = sf.read(str(committed.speech), dtype="int16")
    again, _ = sf.read(str(fresh["speech"]), dtype="int16")
    assert rate == 16000 and len(speech) == 100 * SAMPLES_PER_FRAME
    assert np.abs(speech.astype(np.int32) - again).max() <= 1  # exact here; one LSB of slack across numpy builds


def test_own_inputs_without_released_weights_run_the_bundled_model_and_say_so(no_released_weights, tmp_path):
    """`python demo.py --source face.png --audio speech.wav` with no released weights: the bundled model,
    with one line saying so; without the bundled model, one error line."""
    import soundfile as sf

    shipped = REPO / "checkpoints" / "synthtalk"
    speech, rate = sf.read(str(bundled_inputs().speech), dtype="int16")
    short = tmp_path / "speech.wav"
    sf.write(short, speech[: rate // 2], rate)  # 0.5 s: 12 frames
    args = ["--source", str(bundled_inputs().face), "--audio", str(short), "--no-crop", "--quiet", "--out", "o.mp4"]
    result = run_demo(tmp_path, *args, released=no_released_weights, bundled=shipped)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if line.startswith("demo:")]
    assert len(notices) == 1 and "bundled SynthTalk model" in notices[0] and "cartoon faces only" in notices[0]
    assert "wrote o.mp4 (12 frames" in result.stdout
    missing = run_demo(tmp_path, *args, released=no_released_weights, bundled=tmp_path / "no_bundled_model")
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "edtalk download" in lines[0]


def test_the_missing_weights_error_names_the_bundled_model(no_released_weights, tmp_path, monkeypatch, capsys):
    from edtalk.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(BUNDLED_MODEL_ENV, str(REPO / "checkpoints" / "synthtalk"))
    assert main(["generate", "--checkpoint-dir", str(no_released_weights), "--source", str(bundled_inputs().face),
                 "--audio", str(bundled_inputs().speech), "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("edtalk: error: checkpoint not found:") and "edtalk download" in line
    assert line.endswith(f"or run the bundled SynthTalk model (64x64, cartoon faces only) with --checkpoint-dir "
                         f"{REPO / 'checkpoints' / 'synthtalk'}")
