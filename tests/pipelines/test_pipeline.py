"""EDTalkPipeline: the frames the CLI writes, networks loaded once, typed driver specs, errors that name
their argument, res.save with the sound, and nothing half-written when a call fails."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from edtalk import EDTalkPipeline, ExpressionFromSpeech, PoseFromSpeech, Preset, Weights
from edtalk.cli import main
from edtalk.errors import CheckpointError, EDTalkError, InputError
from edtalk.testing import write_tiny_checkpoints
from edtalk.video import probe_video, read_video, write_video

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "checkpoints" / "synthtalk"
FACE = REPO / "examples" / "source.png"
SYNTH_FACE = REPO / "examples" / "synthtalk_face.png"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("pipe-ckpt"))["EDTalk.pt"].parent


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """0.4 s of speech (10 frames), a 64x64 face, a 6-frame lip video and 0.6 s of the bundled model's speech."""
    root = tmp_path_factory.mktemp("pipe-media")
    sr = 16000
    t = np.arange(int(sr * 0.4)) / sr
    sf.write(root / "speech.wav", (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(9 * t))), sr)
    face = np.asarray(Image.open(FACE).convert("RGB").resize((64, 64), Image.BICUBIC))
    Image.fromarray(face).save(root / "face.png")
    write_video(root / "lip.mp4", np.stack([np.roll(face, 3 * i, axis=0) for i in range(6)]), fps=25)
    synth, synth_sr = sf.read(REPO / "examples" / "synthtalk_speech.wav", dtype="float32")
    sf.write(root / "synth.wav", synth[: int(0.6 * synth_sr)], synth_sr)
    return {"speech": root / "speech.wav", "face": root / "face.png", "lip": root / "lip.mp4",
            "synth_speech": root / "synth.wav"}


def cli_frames(tmp_path, *args) -> np.ndarray:
    """The frames `edtalk generate` writes (lossless, from --save-frames)."""
    frames = tmp_path / "cli-frames"
    assert main(["generate", "--quiet", "--device", "cpu", "--no-crop", "--out", str(tmp_path / "cli.mp4"),
                 "--save-frames", str(frames), *map(str, args)]) == 0
    return np.stack([np.asarray(Image.open(p)) for p in sorted(frames.glob("*.png"))])


def test_frames_equal_the_clis_on_tiny_checkpoints(ckpts, media, tmp_path):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    res = pipe(source=media["face"], audio=media["speech"], exp="happy", exp_intensity=1.5, crop=False)
    assert res.frames.dtype == np.uint8 and res.frames.shape == (10, 64, 64, 3) and res.fps == 25
    assert (res.mode, res.variant, res.audio) == ("audio", "edtalk", media["speech"])
    cli = cli_frames(tmp_path, "--checkpoint-dir", ckpts, "--source", media["face"], "--audio", media["speech"],
                     "--exp", "happy", "--exp-intensity", "1.5")
    assert np.array_equal(res.frames, cli)
    assert np.abs(res.frames[0].astype(int) - res.frames[-1]).max() > 0  # the speech moves the mouth


def test_the_bundled_model_with_pose_from_speech_equals_the_cli(media, tmp_path):
    """The model folder's presets, pose flow and its seed: the pipeline's frames are the CLI's."""
    pipe = EDTalkPipeline.from_pretrained(BUNDLED, device="cpu")
    assert pipe.preset_dir == BUNDLED / "presets"
    res = pipe(source=SYNTH_FACE, audio=media["synth_speech"], pose="audio", seed=3, exp="happy", crop=False)
    cli = cli_frames(tmp_path, "--checkpoint-dir", BUNDLED, "--source", SYNTH_FACE, "--audio",
                     media["synth_speech"], "--pose", "audio", "--seed", 3, "--exp", "happy")
    assert res.frames.shape == (15, 64, 64, 3) and np.array_equal(res.frames, cli)
    typed = pipe(source=SYNTH_FACE, audio=media["synth_speech"], pose=PoseFromSpeech(seed=3),
                 exp=Preset({"happy": 1.0}), crop=False)
    assert np.array_equal(typed.frames, res.frames)
    other_seed = pipe(source=SYNTH_FACE, audio=media["synth_speech"], pose=PoseFromSpeech(seed=4), exp="happy",
                      crop=False)
    assert not np.array_equal(other_seed.frames, res.frames)
    assert pipe.loads == {"EDTalk": 1, "Audio2Lip": 1, "pose_flow": 1, "presets": 1}


def test_each_network_loads_once(ckpts, media, monkeypatch):
    from edtalk.model import EDTalk

    reads = []
    real = EDTalk.from_pretrained.__func__
    monkeypatch.setattr(EDTalk, "from_pretrained", classmethod(lambda cls, path, *a, **k: (
        reads.append(Path(path).name), real(cls, path, *a, **k))[1]))
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    assert reads == [] and not pipe.loads  # networks load on first use
    for exp in ("happy", "sad", None, None, "happy"):
        pipe(source=media["face"], audio=media["speech"], exp=exp, crop=False)
    assert reads == ["EDTalk.pt", "EDTalk_lip_pose.pt"]  # no expression: the lip-pose model, as the CLI picks
    assert pipe.loads == {"EDTalk": 1, "EDTalk_lip_pose": 1, "Audio2Lip": 1}
    pipe(source=media["face"], lip=media["lip"], crop=False)  # video-driven: no new network
    assert sum(pipe.loads.values()) == 3


def test_a_replaced_checkpoint_is_loaded_again(ckpts, media, tmp_path):
    import os
    import shutil

    folder = tmp_path / "ckpts"
    shutil.copytree(ckpts, folder)
    pipe = EDTalkPipeline.from_pretrained(folder, device="cpu")
    first = pipe.models(expression=True)[0]
    assert pipe.models(expression=True)[0] is first
    stat = (folder / "EDTalk.pt").stat()
    os.utime(folder / "EDTalk.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert pipe.models(expression=True)[0] is not first and pipe.loads["EDTalk"] == 2


def test_a_saved_generator_folder_is_a_model_folder_of_its_own(ckpts, media, tmp_path):
    from edtalk import EDTalk

    EDTalk.from_pretrained(ckpts / "EDTalk.pt").save_pretrained(tmp_path / "my_model")
    saved = EDTalkPipeline.from_pretrained(tmp_path / "my_model", device="cpu")
    official = EDTalkPipeline.from_pretrained(ckpts, device="cpu", checkpoint=ckpts / "EDTalk.pt")
    call = dict(source=media["face"], lip=media["lip"], exp="happy", crop=False)
    assert np.array_equal(saved(**call).frames, official(**call).frames)


def test_typed_specs_and_arrays_give_the_strings_and_files_frames(ckpts, media, tmp_path):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    base = dict(source=media["face"], audio=media["speech"], crop=False)
    blend = pipe(**base, exp="happy:0.7+sad:0.3", exp_intensity=0.5).frames
    assert np.array_equal(pipe(**base, exp=Preset({"happy": 0.7, "sad": 0.3}, 0.5)).frames, blend)
    np.save(tmp_path / "exp.npy", np.linspace(-2, 2, 10, dtype=np.float32))
    from_file = pipe(**base, exp=str(tmp_path / "exp.npy")).frames
    assert np.array_equal(pipe(**base, exp=Weights(np.linspace(-2, 2, 10))).frames, from_file)
    assert not np.array_equal(from_file, blend)
    face = np.asarray(Image.open(media["face"]).convert("RGB"))
    assert np.array_equal(pipe(**dict(base, source=face), exp=Preset({"happy": 0.7, "sad": 0.3}, 0.5)).frames, blend)
    lip = pipe(source=media["face"], lip=media["lip"], crop=False)
    frames, _ = read_video(media["lip"])
    in_memory = pipe(source=media["face"], lip=frames, crop=False)
    assert lip.mode == in_memory.mode == "video" and np.array_equal(lip.frames, in_memory.frames)
    assert lip.audio is None  # the lip video has no sound track


def test_mouth_weights_drive_the_mouth_and_float_output_is_the_models(ckpts, media):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    mouth = torch.randn(7, 20, generator=torch.Generator().manual_seed(0))
    res = pipe(source=media["face"], lip=Weights(mouth), exp="none", crop=False, output_type="pt")
    assert res.mode == "weights" and res.frames.shape == (7, 3, 64, 64) and res.frames.dtype == torch.float32
    uint8 = pipe(source=media["face"], lip=Weights(mouth), exp="none", crop=False).frames
    expected = ((res.frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(uint8, expected)
    with pytest.raises(InputError, match="save\\(\\) writes uint8 frames"):
        res.save("x.mp4")


@pytest.mark.parametrize("call,field,message", [
    (dict(exp="nosuch"), "exp", "unknown expression preset 'nosuch'"),
    (dict(exp="missing.mp4"), "exp", "neither a file nor a preset"),
    (dict(exp_intensity="strong", exp="happy"), "exp_intensity", "--exp-intensity must be a number"),
    (dict(exp="audio", audio=None, lip="LIP"), "exp", "--exp audio needs --audio"),
    (dict(exp_text=" "), "exp_text", "--exp-text is empty"),
    (dict(exp="happy", exp_text="hi"), "exp_text", "combines only with --exp audio"),
    (dict(pose="audio", audio=None, lip="LIP"), "pose", "--pose audio needs --audio"),
    (dict(pose="audio"), "pose", "audio-to-pose checkpoint not found"),
    (dict(exp=ExpressionFromSpeech()), "exp", "audio/text-to-expression checkpoint not found"),
    (dict(pose=Weights(np.zeros((3, 5)))), "pose", "weights must have shape \\[6\\] or \\[T,6\\]"),
    (dict(source="missing.png"), "source", "image not found"),
    (dict(audio="missing.wav"), "audio", "missing.wav"),
    (dict(audio=None), "audio", "nothing drives the mouth"),
    (dict(smoothing="gauss"), "smoothing", "--smoothing must be one of edge, official, none"),
    (dict(batch_size=0), "batch_size", "at least 1"),
    (dict(source="SOURCE_VIDEO", pose="LIP"), "pose", "--pose does not apply to dubbing"),
    (dict(source="SOURCE_VIDEO", exp="LIP"), "exp", "in dubbing, --exp takes a preset"),
])
def test_errors_name_their_argument(ckpts, media, tmp_path, call, field, message):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    values = {"source": media["face"], "audio": media["speech"], "crop": False, **call}
    values = {k: {"LIP": str(media["lip"]), "SOURCE_VIDEO": str(media["lip"])}.get(v, v) if isinstance(v, str) else v
              for k, v in values.items()}
    out = tmp_path / "out.mp4"
    with pytest.raises(EDTalkError, match=message) as err:
        pipe.write(out, **values)
    assert err.value.field == field
    assert "--" not in err.value.plain
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_expression_on_the_lip_pose_model_and_a_missing_checkpoint_name_their_field(ckpts, media, tmp_path):
    lip_pose = EDTalkPipeline.from_pretrained(ckpts, device="cpu", checkpoint=ckpts / "EDTalk_lip_pose.pt")
    with pytest.raises(CheckpointError, match="needs the full EDTalk checkpoint") as err:
        lip_pose(source=media["face"], audio=media["speech"], exp="happy", crop=False)
    assert err.value.field == "exp"
    with pytest.raises(CheckpointError, match="checkpoint not found") as err:
        EDTalkPipeline.from_pretrained(tmp_path, device="cpu")(source=media["face"], audio=media["speech"], crop=False)
    assert err.value.field == "checkpoint"
    with pytest.raises(InputError, match="unknown device") as err:
        EDTalkPipeline.from_pretrained(ckpts, device="tpu")
    with pytest.raises(InputError, match="preset folder not found") as err:
        EDTalkPipeline.from_pretrained(ckpts, presets=tmp_path / "none")
    assert err.value.field == "presets"


def test_save_writes_an_mp4_with_the_sound(ckpts, media, tmp_path):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    res = pipe(source=media["face"], audio=media["speech"], exp="happy", crop=False)
    path = res.save(tmp_path / "clip.mp4")
    info = probe_video(path)
    assert (info["frames"], info["width"], info["height"], info["audio"]) == (10, 64, 64, True)
    assert abs(info["fps"] - 25) < 1e-6
    decoded, _ = read_video(path)
    written = pipe.write(tmp_path / "written.mp4", source=media["face"], audio=media["speech"], exp="happy",
                         crop=False)
    assert np.array_equal(decoded, read_video(written.path)[0])  # what the CLI's streaming writer makes
    # H.264 is lossy (the tiny model's frames are noise-like): near the frames, far from a grey clip
    assert np.abs(decoded.astype(float) - res.frames).mean() < np.abs(decoded.astype(float) - 128).mean() / 3
    silent = pipe(source=media["face"], lip=media["lip"], crop=False).save(tmp_path / "silent.mp4")
    assert not probe_video(silent)["audio"]


def test_a_failed_save_or_write_leaves_nothing(ckpts, media, tmp_path, monkeypatch):
    import edtalk.video as video

    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    res = pipe(source=media["face"], audio=media["speech"], crop=False)
    real_write, calls = video.VideoWriter.write, []

    def fail_second(self, frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real_write(self, frames)

    monkeypatch.setattr(video.VideoWriter, "write", fail_second)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        pipe.write(out / "clip.mp4", source=media["face"], audio=media["speech"], crop=False, batch_size=2,
                   save_frames=out / "frames")
    assert list(out.iterdir()) == []  # no video, no frames folder, no temporary files
    calls.clear()
    monkeypatch.setattr("edtalk.pipelines.writer.VideoSink.write_images",
                        lambda self, images: (_ for _ in ()).throw(RuntimeError("encoder died")))
    with pytest.raises(RuntimeError, match="encoder died"):
        res.save(out / "saved.mp4")
    assert list(out.iterdir()) == []
    with pytest.raises(InputError, match="output must be a video file") as err:
        res.save(out / "clip.gif")
    assert err.value.field == "out"
