"""Real-footage inputs end to end (tiny random-weight models): full-quality sound in every mode,
sideways phone photos (EXIF orientation), dubbing with paste-back, and the dubbing --pose refusal."""
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from edtalk.cli import main
from edtalk.video import probe_audio, probe_video, read_video, write_video

SR = 48000


def run(tiny_ckpts, *args):
    ckpt_dir = str(next(iter(tiny_ckpts.values())).parent)
    return main(["generate", "--checkpoint-dir", ckpt_dir, "--quiet", "--batch-size", "6", *map(str, args)])


@pytest.fixture(scope="module")
def footage(tmp_path_factory, media):
    """48 kHz stereo speech, a lip video carrying 48 kHz stereo sound, sideways JPEGs of the astronaut."""
    import skimage.data

    root = tmp_path_factory.mktemp("footage")
    t = np.arange(int(SR * 0.5)) / SR  # 12 frames at 25 fps
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 180 * t) * env, 0.2 * np.sin(2 * np.pi * 2400 * t) * env], 1)
    sf.write(root / "speech48.wav", stereo, SR)
    face = np.asarray(Image.open(media["face"]))
    frames = np.stack([np.roll(face, i % 3, axis=1) for i in range(8)])
    write_video(root / "lip48.mp4", frames, fps=25, audio=root / "speech48.wav")  # keeps 48 kHz stereo
    upright = np.ascontiguousarray(skimage.data.astronaut())
    portrait = np.asarray(Image.fromarray(upright).resize((256, 256), Image.BICUBIC))
    write_video(root / "talk48.mp4", np.stack([np.roll(portrait, i, axis=0) for i in range(8)]), fps=25,
                audio=root / "speech48.wav")
    for orientation, turns in ((6, 1), (8, -1)):  # stored sideways; the tag says how to turn it upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(np.rot90(upright, turns).copy()).save(root / f"rotated{orientation}.jpg", exif=exif, quality=95)
    Image.fromarray(upright).save(root / "upright.jpg", quality=95)
    return {"speech48": root / "speech48.wav", "lip48": root / "lip48.mp4", "talk48": root / "talk48.mp4",
            "upright": root / "upright.jpg",
            "rotated6": root / "rotated6.jpg", "rotated8": root / "rotated8.jpg"}


def assert_full_sound(path, frames):
    info, sound = probe_video(path), probe_audio(path)
    assert info["frames"] == frames
    assert (sound["sample_rate"], sound["channels"]) == (SR, 2)  # not the 16 kHz mono mel copy
    assert sound["samples"] == frames * SR // 25  # exactly L/25 s


def test_sideways_phone_photo_is_turned_upright_and_cropped(footage):
    from edtalk.pipelines.preprocess import prepare_image

    upright = prepare_image(footage["upright"], 256)
    for name in ("rotated6", "rotated8"):
        turned = prepare_image(footage[name], 256)  # sideways, dlib's frontal detector would find no face
        assert turned.original.shape == upright.original.shape
        # The same face, found in the same place (up to JPEG noise on a turned pixel grid).
        assert np.abs(turned.crop.landmarks - upright.crop.landmarks).mean() < 1.0
        assert (turned.tensor - upright.tensor).abs().mean() < 0.05


def test_audio_driven_output_keeps_48k_stereo_sound(tiny_ckpts, footage, tmp_path):
    out = tmp_path / "a.mp4"
    assert run(tiny_ckpts, "--source", footage["rotated6"], "--audio", footage["speech48"], "--exp", "happy",
               "--out", out) == 0
    assert_full_sound(out, 12)


def test_video_driven_output_carries_the_lip_videos_own_sound(tiny_ckpts, footage, tmp_path):
    out = tmp_path / "v.mp4"
    assert run(tiny_ckpts, "--no-crop", "--source", footage["upright"], "--lip", footage["lip48"], "--out", out) == 0
    assert_full_sound(out, 8)


def test_dubbing_with_paste_back_keeps_sound_and_frame_size(tiny_ckpts, media, footage, tmp_path):
    out = tmp_path / "dub.mp4"
    assert run(tiny_ckpts, "--source", footage["talk48"], "--audio", footage["speech48"], "--paste-back", "--out", out) == 0
    assert_full_sound(out, 12)  # the 8-frame source is ping-ponged to the audio's 12 frames
    assert (probe_video(out)["width"], probe_video(out)["height"]) == (256, 256)  # the full source frames
    made, source = read_video(out)[0][:8].astype(float), read_video(footage["talk48"])[0].astype(float)
    assert np.abs(made[:, :40, :40] - source[:, :40, :40]).mean() < 3  # background: the source's own pixels
    assert np.abs(made[:, 40:90, 95:145] - source[:, 40:90, 95:145]).mean() > 10  # the face is new


def test_dubbing_refuses_a_pose_video_with_one_line(tiny_ckpts, media, tmp_path, capsys):
    out = tmp_path / "dub.mp4"
    assert run(tiny_ckpts, "--no-crop", "--source", media["driver"], "--audio", media["speech"],
               "--pose", media["driver"], "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edtalk: error: --pose does not apply to dubbing")
    assert not out.exists()
