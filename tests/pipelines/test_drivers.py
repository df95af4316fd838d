"""Which driver frame fills which slot: plan_drivers, and what generate() really renders.

The generate() tests run the product path with a stand-in model whose "encoder" reads a colour
code off each frame (lip video: red = 8k+4, pose video: green, expression video: blue, dubbed
source: red) and whose render records the weights it is given. A swapped slot, hold instead of
ping-pong, or a missing expression tail trim changes the recorded codes.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from edtalk.errors import InputError
from edtalk.pipelines.drivers import EXP_TAIL_TRIM, extend_indices, plan_drivers
from edtalk.pipelines.generate import GenerateOptions, generate
from edtalk.video import write_video

SIZE = 64


# ----------------------------------------------------------------------------- the pure plan

def pingpong(n, length):
    seq = []
    while len(seq) < length:
        seq += list(range(n)) + list(range(n - 1, -1, -1))
    return seq[:length]


def test_plan_video_mode_slots_extension_and_trim():
    plan = plan_drivers("video", 12, pose_frames=5, exp_frames=26)
    assert plan.lip.tolist() == list(range(12))
    assert plan.pose.tolist() == pingpong(5, 12)
    assert plan.exp.tolist() == pingpong(26 - EXP_TAIL_TRIM, 12)  # 6 frames left after the trim
    assert plan.source is None


def test_plan_longer_drivers_are_cut_and_short_expression_is_not_trimmed():
    plan = plan_drivers("audio", 4, pose_frames=9, exp_frames=20)
    assert plan.pose.tolist() == [0, 1, 2, 3]
    assert plan.exp.tolist() == [0, 1, 2, 3]  # 20 frames: not more than the trim, kept whole
    assert plan_drivers("audio", 3, exp_frames=1).exp.tolist() == [0, 0, 0]
    assert plan_drivers("audio", 5, exp_frames=30, exp_trim=0).exp.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("mode,lip_pose,rule", [
    ("audio", False, "hold"),  # EDTalk-A
    ("video", False, "hold"),  # EDTalk-V
    ("audio", True, "pingpong"),  # lip-pose A: the official demo ping-pongs
    ("video", True, "pingpong"),  # lip-pose V
])
def test_plan_parity_pose_rule_per_official_demo(mode, lip_pose, rule):
    plan = plan_drivers(mode, 9, pose_frames=4, exp_frames=None if lip_pose else 25, parity=True,
                        lip_pose_model=lip_pose)
    assert plan.pose_rule == rule
    expected = [min(j, 3) for j in range(9)] if rule == "hold" else pingpong(4, 9)
    assert plan.pose.tolist() == expected
    if not lip_pose:
        assert plan.exp.tolist() == pingpong(5, 9)  # expression: trim 20, then ping-pong, also in parity
    # Without parity every driver ping-pongs.
    assert plan_drivers(mode, 9, pose_frames=4, lip_pose_model=lip_pose).pose.tolist() == pingpong(4, 9)


def test_plan_dubbing_pingpongs_the_source_and_refuses_a_pose_video():
    plan = plan_drivers("dubbing", 7, source_frames=3, parity=True)
    assert plan.source.tolist() == pingpong(3, 7)
    assert plan.pose is None
    with pytest.raises(InputError, match="--pose does not apply to dubbing"):
        plan_drivers("dubbing", 7, source_frames=3, pose_frames=4)


def test_extend_indices_matches_reversed_copy_appending():
    for n in (1, 2, 5):
        assert extend_indices(n, 23).tolist() == pingpong(n, 23)


# ----------------------------------------------------------------------------- what generate() renders

class CodeModel(torch.nn.Module):
    """Stand-in for EDTalk: latent = per-channel mean pixel value; each head reads one channel."""

    def __init__(self, has_expression=True):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(size=SIZE)
        self.has_expression = has_expression
        self.variant = "edtalk" if has_expression else "lip_pose"
        self.calls = []

    device = property(lambda self: self.anchor.device)
    dtype = property(lambda self: self.anchor.dtype)

    def encode_latent(self, images):
        return (images.float().mean(dim=(2, 3)) + 1) * 127.5  # [B,3] in pixel units

    def encode(self, images):
        return self.encode_latent(images), None

    def motion_weights(self, images=None, latent=None, parts=("mouth", "pose", "exp")):
        latent = self.encode_latent(images) if latent is None else latent
        heads = {"mouth": latent[:, 0:1].repeat(1, 20), "pose": latent[:, 1:2].repeat(1, 6),
                 "exp": latent[:, 2:3].repeat(1, 10)}
        return {k: heads[k] for k in parts if k != "exp" or self.has_expression}

    def prepare_source(self, feats):
        return feats

    def render(self, latent, feats, mouth, pose, exp):
        n = mouth.shape[0]
        self.calls.append({"identity": latent[:, 0].expand(n), "mouth": mouth[:, 0], "pose": pose[:, 0],
                           "exp": None if exp is None else exp[:, 0].expand(n)})
        return torch.zeros(n, 3, SIZE, SIZE)

    def recorded(self, slot):
        """The frame index each output frame's `slot` carried (decoded from the colour code)."""
        values = torch.cat([c[slot] for c in self.calls]).numpy()
        return np.rint((values - 4) / 8).astype(int).tolist()


class ZeroAudio2Lip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, mels):
        return torch.zeros(mels.shape[0], 20)


def coded_video(path, frames, channel, fps=25):
    clip = np.zeros((frames, SIZE, SIZE, 3), np.uint8)
    clip[..., channel] = (8 * np.arange(frames) + 4)[:, None, None]
    write_video(path, clip, fps=fps)
    return path


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    root = tmp_path_factory.mktemp("coded")
    face = np.full((SIZE, SIZE, 3), 100, np.uint8)
    from PIL import Image

    Image.fromarray(face).save(root / "face.png")
    sr = 16000
    t = np.arange(int(sr * 0.4)) / sr  # 10 frames
    sf.write(root / "speech.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)
    t = np.arange(int(sr * 1.0)) / sr  # 25 frames
    sf.write(root / "long.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)
    return {"face": root / "face.png", "speech": root / "speech.wav", "long": root / "long.wav",
            "lip": coded_video(root / "lip.mp4", 12, 0), "pose": coded_video(root / "pose.mp4", 5, 1),
            "exp": coded_video(root / "exp.mp4", 26, 2), "source": coded_video(root / "source.mp4", 8, 0)}


def run(tmp_path, model, audio2lip=None, **kw):
    opts = GenerateOptions(out=str(tmp_path / "out.mp4"), crop=False, progress=False, device="cpu", batch_size=3, **kw)
    return generate(opts, model=model, audio2lip=audio2lip)


@pytest.mark.parametrize("parity", [False, True])
def test_video_mode_renders_each_slot_from_its_own_driver(coded, tmp_path, parity):
    model = CodeModel()
    result = run(tmp_path, model, source=str(coded["face"]), lip=str(coded["lip"]), pose=str(coded["pose"]),
                 exp=str(coded["exp"]), parity=parity)
    assert result.num_frames == 12
    assert model.recorded("mouth") == list(range(12))
    assert model.recorded("pose") == ([min(j, 4) for j in range(12)] if parity else pingpong(5, 12))
    assert model.recorded("exp") == pingpong(6, 12)  # 26 frames − 20 tail frames, then ping-pong


def test_lip_pose_audio_mode_pingpongs_the_pose_in_parity(coded, tmp_path):
    model = CodeModel(has_expression=False)
    result = run(tmp_path, model, ZeroAudio2Lip(), source=str(coded["face"]), audio=str(coded["speech"]),
                 pose=str(coded["pose"]), parity=True)
    assert result.num_frames == 10
    assert model.recorded("pose") == pingpong(5, 10)
    assert all(c["exp"] is None for c in model.calls)


def test_dubbing_pingpongs_the_source_video_for_identity_and_pose(coded, tmp_path):
    model = CodeModel()
    result = run(tmp_path, model, ZeroAudio2Lip(), source=str(coded["source"]), audio=str(coded["long"]))
    assert result.num_frames == 25
    assert model.recorded("identity") == pingpong(8, 25)  # spooled: the source runs backwards too
    model = CodeModel()
    run(tmp_path, model, ZeroAudio2Lip(), source=str(coded["source"]), audio=str(coded["speech"]))
    assert model.recorded("identity") == list(range(8)) + [7, 6]  # 10 frames from 8: one turn
    model = CodeModel()
    short = coded_video(tmp_path / "src20.mp4", 20, 0)
    run(tmp_path, model, ZeroAudio2Lip(), source=str(short), audio=str(coded["speech"]))
    assert model.recorded("identity") == list(range(10))  # streamed forward, cut at the audio's end


def test_dubbing_refuses_a_pose_video_before_any_work(coded, tmp_path):
    model = CodeModel()
    with pytest.raises(InputError, match="--pose does not apply to dubbing"):
        run(tmp_path, model, ZeroAudio2Lip(), source=str(coded["source"]), audio=str(coded["speech"]),
            pose=str(coded["pose"]))
    assert model.calls == [] and not (tmp_path / "out.mp4").exists()


# ----------------------------------------------------------------------------- streaming output

def test_frames_stream_to_the_encoder_batch_by_batch_and_face_sr_runs_on_each(coded, tmp_path, monkeypatch):
    import edtalk.face.restore as restore
    import edtalk.video as video

    writes, restored = [], []
    real_write = video.VideoWriter.write
    monkeypatch.setattr(video.VideoWriter, "write", lambda self, frames: (writes.append(len(frames)),
                                                                            real_write(self, frames)))

    class Doubler:  # stands in for GFPGAN: x2 upscale, one call per output batch
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, frames):
            restored.append(len(frames))
            return frames.repeat(2, axis=1).repeat(2, axis=2)

    monkeypatch.setattr(restore, "FaceRestorer", Doubler)
    monkeypatch.setattr(restore, "check_face_restoration", lambda weights=None: None)
    result = run(tmp_path, CodeModel(), source=str(coded["face"]), lip=str(coded["lip"]), face_sr=True)
    assert writes == restored == [3, 3, 3, 3]  # batch_size 3: never the whole clip at once
    info = video.probe_video(result.path)
    assert (info["frames"], info["width"]) == (12, 2 * SIZE)
