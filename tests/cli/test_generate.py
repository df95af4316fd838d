"""End-to-end CLI runs on tiny random-weight models (smoke tests; the weights are not a result)."""
import numpy as np
import pytest

from edtalk.cli import main
from edtalk.video import probe_video, read_video


def run(tiny_ckpts, *args):
    ckpt_dir = str(next(iter(tiny_ckpts.values())).parent)
    return main(["generate", "--checkpoint-dir", ckpt_dir, "--no-crop", "--quiet", *map(str, args)])


def assert_video(path, frames, audio=True):
    info = probe_video(path)
    assert info["num_video_streams"] == 1
    assert info["num_audio_streams"] == (1 if audio else 0)
    assert info["frames"] == frames
    assert info["duration"] == pytest.approx(frames / 25, abs=0.08)


def test_audio_driven_with_preset_and_pose_video(tiny_ckpts, media, tmp_path):
    out = tmp_path / "a.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--audio", media["speech"], "--pose", media["driver"],
               "--exp", "happy", "--out", out) == 0
    assert_video(out, 32)  # ⌊1.3 s · 16000 / 640⌋
    frames, fps = read_video(out)
    assert fps == 25 and frames.shape[1:] == (64, 64, 3)
    assert frames.std() > 5  # not a blank video


def test_audio_rate_is_resampled_and_length_follows_audio(tiny_ckpts, media, tmp_path):
    out = tmp_path / "a44.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--audio", media["speech44"], "--out", out) == 0
    assert_video(out, 32)


def test_video_driven_resamples_30fps_drivers_and_uses_their_sound(tiny_ckpts, media, tmp_path):
    out = tmp_path / "v.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--lip", media["driver"], "--pose", media["driver"],
               "--exp", media["driver"], "--out", out) == 0
    assert_video(out, 20)  # 24 frames at 30 fps = 0.8 s = 20 frames at 25 fps


def test_lip_pose_model_and_dubbing(tiny_ckpts, media, tmp_path):
    out = tmp_path / "lp.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--lip", media["driver"], "--pose", media["driver"],
               "--exp", "none", "--checkpoint", tiny_ckpts["EDTalk_lip_pose.pt"], "--out", out) == 0
    assert_video(out, 20)
    dub = tmp_path / "dub.mp4"
    assert run(tiny_ckpts, "--source", media["driver"], "--audio", media["speech"], "--out", dub) == 0
    assert_video(dub, 32)  # audio longer than the video: the source video is extended


def test_expression_blend_intensity_npy_and_frames_export(tiny_ckpts, media, tmp_path):
    outs = {}
    for name, exp in [("happy", ["--exp", "happy"]), ("happy2", ["--exp", "happy", "--exp-intensity", "2"]),
                      ("blend", ["--exp", "happy:0.5+sad:0.5"])]:
        outs[name] = tmp_path / f"{name}.mp4"
        assert run(tiny_ckpts, "--source", media["face"], "--audio", media["speech"], *exp, "--out", outs[name]) == 0
    frames = {k: read_video(v)[0].astype(np.float32) for k, v in outs.items()}
    assert np.abs(frames["happy"] - frames["happy2"]).mean() > 0.5
    assert np.abs(frames["happy"] - frames["blend"]).mean() > 0.5
    npy = tmp_path / "exp.npy"
    from edtalk.presets import preset

    np.save(npy, preset("happy")[None])
    out = tmp_path / "npy.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--audio", media["speech"], "--exp", npy, "--out", out,
               "--save-frames", tmp_path / "pngs") == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 32
    # Same weights as the preset → the same video.
    assert np.abs(read_video(out)[0].astype(np.float32) - frames["happy"]).mean() < 0.5


def test_legacy_normalize_spans_full_range(tiny_ckpts, media, tmp_path):
    out = tmp_path / "legacy.mp4"
    assert run(tiny_ckpts, "--source", media["face"], "--audio", media["speech"], "--legacy-normalize",
               "--save-frames", tmp_path / "f", "--out", out) == 0
    from PIL import Image

    first = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "f").glob("*.png"))])
    assert first.min() == 0 and first.max() >= 254  # per-clip min–max


def test_help_and_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    assert "--exp-intensity" in capsys.readouterr().out
    assert main(["presets"]) == 0
    assert "surprised" in capsys.readouterr().out
