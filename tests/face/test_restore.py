"""Optional GFPGAN face restoration: clear errors when unusable, and the plumbing around the network."""
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from edtalk.cli import main
from edtalk.errors import CheckpointError, InputError
from edtalk.face import restore


@pytest.fixture
def inputs(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "face.png")
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "speech.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    return tmp_path


def run_cli_error(capsys, inputs, *extra):
    out = inputs / "out.mp4"
    # An empty checkpoint folder: an error about it would mean work started before the check.
    rc = main(["generate", "--source", str(inputs / "face.png"), "--audio", str(inputs / "speech.wav"), "--no-crop",
               "--quiet", "--checkpoint-dir", str(inputs / "no_checkpoints"), "--out", str(out), "--face-sr", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and err[0].startswith("edtalk: error: "), err
    return err[0]


def test_missing_package_is_one_error_before_any_work(capsys, inputs, monkeypatch):
    monkeypatch.setattr(restore, "gfpgan_available", lambda: False)
    weights = inputs / "GFPGANv1.4.pth"
    weights.write_bytes(b"x")
    msg = run_cli_error(capsys, inputs, "--face-sr-weights", str(weights))
    assert "gfpgan package" in msg and "edtalk[face-sr]" in msg


def test_missing_weights_are_one_error_before_any_work(capsys, inputs, monkeypatch):
    monkeypatch.setattr(restore, "gfpgan_available", lambda: True)
    monkeypatch.delenv(restore.WEIGHTS_ENV, raising=False)
    msg = run_cli_error(capsys, inputs)
    assert "--face-sr-weights" in msg and restore.WEIGHTS_ENV in msg
    msg = run_cli_error(capsys, inputs, "--face-sr-weights", str(inputs / "nope.pth"))
    assert "GFPGAN weights not found" in msg and "nope.pth" in msg
    monkeypatch.setenv(restore.WEIGHTS_ENV, str(inputs / "env.pth"))
    assert "env.pth" in run_cli_error(capsys, inputs)


def test_a_gfpgan_that_fails_to_import_is_one_error_before_any_work(capsys, inputs, monkeypatch):
    monkeypatch.setattr(restore, "gfpgan_available", lambda: True)
    monkeypatch.setitem(sys.modules, "gfpgan", None)  # importing it raises ImportError
    weights = inputs / "GFPGANv1.4.pth"
    weights.write_bytes(b"x")
    assert "gfpgan package failed to import" in run_cli_error(capsys, inputs, "--face-sr-weights", str(weights))


def test_weights_come_from_the_flag_else_the_environment(stub_gfpgan, tmp_path, monkeypatch):
    flag, env = tmp_path / "flag.pth", tmp_path / "env.pth"
    flag.write_bytes(b"x")
    env.write_bytes(b"x")
    monkeypatch.setenv(restore.WEIGHTS_ENV, str(env))
    assert restore.check_face_restoration(str(flag)) == flag
    assert restore.check_face_restoration(None) == env


class NegativeNet(torch.nn.Module):
    """Stands in for GFPGAN's architecture: records its inputs, returns the negative image (as
    GFPGAN, in a tuple)."""

    def __init__(self, **options):
        super().__init__()
        self.options, self.seen = options, []
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, x, return_rgb=False):
        self.seen.append((tuple(x.shape), x.dtype, float(x.min()), float(x.max()), x.is_contiguous()))
        return -x * self.gain, None


@pytest.fixture
def stub_gfpgan(tmp_path, monkeypatch):
    """gfpgan 'installed' with NegativeNet as its architecture, and a weights file for it."""
    monkeypatch.setattr(restore, "gfpgan_available", lambda: True)
    monkeypatch.setattr(restore, "_gfpgan_class", lambda: NegativeNet)
    weights = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": NegativeNet().state_dict()}, weights)
    return weights


@pytest.fixture
def stub_restorer(stub_gfpgan):
    restorer = restore.FaceRestorer(str(stub_gfpgan), batch_size=2)
    assert restorer.net.options["out_size"] == 512
    return restorer, restorer.net


def test_weights_of_another_network_are_one_clear_error(stub_gfpgan, tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match=r"GFPGAN .*do not match.*1 missing.*1 unexpected"):
        restore.FaceRestorer(str(other))


@pytest.mark.parametrize("size", [256, 64])
def test_restorer_plumbing_shapes_dtype_and_frame_order(stub_restorer, size):
    restorer, net = stub_restorer
    levels = np.array([0, 40, 128, 200, 255], dtype=np.uint8)  # one flat grey per frame
    frames = np.broadcast_to(levels[:, None, None, None], (5, size, size, 3)).copy()
    frames[:, : size // 2, :, 0] = 10  # a top half that differs, to catch flips and transposes
    out = restorer(frames)
    assert out.shape == (5, 2 * size, 2 * size, 3) and out.dtype == np.uint8
    # The network saw contiguous 512² RGB in [-1, 1], two frames at a time, in order.
    assert [s[0] for s in net.seen] == [(2, 3, 512, 512), (2, 3, 512, 512), (1, 3, 512, 512)]
    assert all(s[1] == torch.float32 and -1 <= s[2] and s[3] <= 1 and s[4] for s in net.seen)
    # The negative image comes back, frame i from frame i (exact on the flat areas).
    np.testing.assert_array_equal(out[:, -1, -1, 1], 255 - levels)
    np.testing.assert_array_equal(out[:, 0, 0, 0], np.full(5, 245))
    np.testing.assert_array_equal(out[:, -1, -1, 0], 255 - levels)


def test_restorer_rejects_float_frames(stub_restorer):
    restorer, _ = stub_restorer
    with pytest.raises(InputError, match="uint8"):
        restorer(np.zeros((1, 8, 8, 3), np.float32))


def test_generate_restores_every_output_frame(stub_gfpgan, inputs, tmp_path):
    """The product path: `generate(face_sr=True)` writes the restorer's 2x frames (here negatives)."""
    from edtalk.pipelines.generate import GenerateOptions, generate
    from edtalk.testing import write_tiny_checkpoints
    from edtalk.video import read_video

    ckpts = write_tiny_checkpoints(tmp_path / "ckpt")["EDTalk.pt"].parent
    t = np.arange(3200) / 16000  # 0.2 s: 5 frames
    sf.write(tmp_path / "short.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    common = dict(source=str(inputs / "face.png"), audio=str(tmp_path / "short.wav"), checkpoint_dir=str(ckpts),
                  crop=False, device="cpu", progress=False)
    plain = generate(GenerateOptions(out=str(tmp_path / "plain.mp4"), **common))
    restored = generate(GenerateOptions(out=str(tmp_path / "sr.mp4"), face_sr=True, face_sr_weights=str(stub_gfpgan),
                                        **common))
    assert restored.num_frames == plain.num_frames == 5
    a, b = read_video(plain.path)[0].astype(float), read_video(restored.path)[0].astype(float)
    assert a.shape[1:3] == (64, 64) and b.shape[1:3] == (128, 128)
    # Frame by frame, the mean level is the negative's (H.264 moves it by a level or two).
    np.testing.assert_allclose(b.mean(axis=(1, 2, 3)), 255 - a.mean(axis=(1, 2, 3)), atol=3)
