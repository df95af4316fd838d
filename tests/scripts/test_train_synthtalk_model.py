"""scripts/train_synthtalk_model.py --preset tiny: every phase writes its export, the output folder is
what `edtalk generate` reads (audio-driven, pose and expression from the speech), and a second
invocation skips every phase.  About a minute on one CPU thread."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_synthtalk_model.py"
PHASES = ("data", "stage1", "stage2", "syncnet", "motion", "audio2lip", "pose_flow", "audio2exp", "presets",
          "collect", "probe")
MODEL_FILES = ("EDTalk/model.safetensors", "EDTalk_lip_pose/config.json", "Audio2Lip/model.safetensors", "pose_flow/config.json", "pose_flow/model.safetensors",
               "audio2exp/config.json", "audio2exp/model.safetensors", "syncnet/config.json",
               "syncnet/model.safetensors", "presets/presets.json", "training.json", "probe.json")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def trained(tiny_synthtalk_model):
    return tiny_synthtalk_model


def test_every_phase_runs_once_and_writes_its_export(trained):
    stdout, work, tree = trained["stdout"], trained["work"], trained["tree"]
    for phase in PHASES:
        assert f"[{phase}] start" in stdout and f"[{phase}] done in " in stdout, phase
    assert (tree / "test.json").is_file() and (tree / "frames.lmdb").exists() and any((tree / "mel").iterdir())
    for stage in ("stage1", "stage2"):
        assert list((work / "runs" / stage / "export").glob("*.pt")), stage
    assert (work / "runs" / "syncnet" / "export" / "model" / "config.json").is_file()
    assert (work / "runs" / "audio2lip" / "export" / "Audio2Lip.pt").is_file()
    assert (work / "runs" / "pose_flow" / "export" / "pose_flow" / "config.json").is_file()
    assert (work / "runs" / "audio2exp" / "export" / "audio2exp" / "config.json").is_file()
    clips = sorted(p.stem for p in (tree / "video").glob("*.mp4"))
    for cache in ("EDTalk_lip_feature", "EDTalk_pose_feature", "EDTalk_exp_feature"):
        assert sorted(p.stem for p in (tree / cache).glob("*.npy")) == clips, cache
    assert sorted(p.stem for p in (work / "presets").glob("*.npy")) == sorted(EMOTIONS)


def test_output_folder_holds_every_model_file(trained):
    out = trained["out"]
    for name in MODEL_FILES:
        assert (out / name).is_file(), name
    assert sorted(p.stem for p in (out / "presets").glob("*.npy")) == sorted(EMOTIONS)


def test_generate_runs_on_the_output_folder_with_pose_and_expression_from_audio(trained, tmp_path):
    from PIL import Image

    from edtalk.cli import main
    from edtalk.video import read_video

    tree, out = trained["tree"], trained["out"]
    clip = sorted((tree / "video").glob("*.mp4"))[0].stem
    frames, _ = read_video(tree / "video" / f"{clip}.mp4")
    Image.fromarray(frames[0]).save(tmp_path / "face.png")
    video = tmp_path / "talk.mp4"
    code = main(["generate", "--checkpoint-dir", str(out), "--presets", str(out / "presets"), "--no-crop", "--quiet",
                 "--device", "cpu", "--source", str(tmp_path / "face.png"), "--audio", str(tree / "audio" / f"{clip}.wav"),
                 "--pose", "audio", "--exp", "audio", "--out", str(video)])
    assert code == 0
    rendered, fps = read_video(video)
    assert fps == 25 and len(rendered) == len(frames)  # SynthTalk audio is cut frame-exactly with its video


def test_second_invocation_skips_every_phase(trained):
    result = run_script("--preset", "tiny", "--work", trained["work"], "--out", trained["out"], "--device", "cpu",
                        "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    stdout = result.stdout
    for phase in PHASES:
        assert f"[{phase}] skip" in stdout, phase
    assert "start" not in stdout and "edtalk.cli" not in stdout  # no command ran


def test_bad_input_is_one_error_line(trained):
    result = run_script("--preset", "tiny", "--work", trained["work"], "--threads", 0)
    assert result.returncode == 2 and result.stderr.strip() == "edtalk: error: --threads must be at least 1"
    result = run_script("--preset", "full", "--work", trained["work"])  # that work folder holds the tiny tree
    assert result.returncode == 2
    assert result.stderr.strip().startswith("edtalk: error:") and len(result.stderr.strip().splitlines()) == 1
