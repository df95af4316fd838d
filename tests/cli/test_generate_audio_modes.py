"""`edtalk generate --pose audio` / `--exp audio` / `--exp-text` on tiny random checkpoints plus tiny
random pose-flow and audio2exp exports (smoke tests of the plumbing; the weights are not a result)."""
import numpy as np
import pytest
import torch

from edtalk.cli import main
from edtalk.networks.audio2lip import load_audio2lip
from edtalk.model import EDTalk
from edtalk.networks.expression_predictor import ExpressionPredictor, ExpressionPredictorConfig, save_expression_predictor
from edtalk.networks.pose_flow import PoseFlow, PoseFlowConfig, save_pose_flow
from edtalk.video import read_video


@pytest.fixture(scope="module")
def ckpt_dir(tiny_ckpts, tmp_path_factory):
    """A checkpoint folder with the tiny models and pose_flow/ + audio2exp/ exports."""
    folder = tmp_path_factory.mktemp("audio_modes")
    for name, path in tiny_ckpts.items():
        (folder / name).symlink_to(path)
    a2l = load_audio2lip(tiny_ckpts["Audio2Lip.pt"])
    torch.manual_seed(0)
    flow = PoseFlow(PoseFlowConfig.tiny(history=4, context=2, audio_dim=a2l.config.embed_dim))
    flow.set_pose_stats(torch.zeros(6), torch.full((6,), 0.5))
    save_pose_flow(folder / "pose_flow", flow, a2l)
    save_expression_predictor(folder / "audio2exp",
                              ExpressionPredictor(ExpressionPredictorConfig.tiny(audio_dim=2 * a2l.config.embed_dim)).eval(), a2l)
    return folder


@pytest.fixture
def rendered(monkeypatch):
    """The pose and expression weights every render call receives."""
    calls = []
    original = EDTalk.render

    def spy(self, latent, feats, mouth, pose=None, exp=None):
        calls.append((None if pose is None else pose.clone(), None if exp is None else exp.clone()))
        return original(self, latent, feats, mouth, pose, exp)

    monkeypatch.setattr(EDTalk, "render", spy)
    return calls


@pytest.fixture(scope="module")
def short_speech(media, tmp_path_factory):
    """The first 0.4 s of the test speech (10 frames): rendering dominates these tests' time."""
    import soundfile as sf

    wav, sr = sf.read(media["speech"], dtype="float32")
    path = tmp_path_factory.mktemp("short") / "speech.wav"
    sf.write(path, wav[: int(0.4 * sr)], sr)
    return path


def run(ckpt_dir, inputs, out, *args):
    return main(["generate", "--checkpoint-dir", str(ckpt_dir), "--no-crop", "--quiet", "--source", str(inputs["face"]),
                 "--audio", str(inputs["speech"]), "--out", str(out), "--batch-size", "10", *map(str, args)])


@pytest.fixture
def inputs(media, short_speech):
    return {"face": media["face"], "speech": short_speech}


def test_pose_from_audio_is_deterministic_per_seed(ckpt_dir, inputs, tmp_path, rendered):
    videos, poses = [], []
    for k, seed in enumerate((1, 1, 2)):
        out = tmp_path / f"pose{k}.mp4"
        rendered.clear()
        assert run(ckpt_dir, inputs, out, "--pose", "audio", "--seed", seed) == 0
        videos.append(read_video(out)[0])
        poses.append(torch.cat([p for p, _ in rendered]))
    assert len(poses[0]) == len(videos[0]) == 10  # one sampled pose per output frame
    assert torch.equal(poses[0], poses[1]) and np.array_equal(videos[0], videos[1])
    assert (poses[0] - poses[2]).abs().max() > 1e-3 and not np.array_equal(videos[0], videos[2])
    assert (poses[0] - poses[0][:1]).abs().max() > 1e-3  # the head moves


def test_text_changes_the_expression(ckpt_dir, inputs, tmp_path, rendered):
    exps = []
    for k, text in enumerate(("I am so happy", "I am furious")):
        rendered.clear()
        assert run(ckpt_dir, inputs, tmp_path / f"text{k}.mp4", "--exp-text", text) == 0
        exp = torch.cat([e for _, e in rendered])
        assert exp.shape[-1] == 10 and (exp == exp[:1]).all()  # one α_e for the utterance
        exps.append(exp[0])
    assert (exps[0] - exps[1]).abs().max() > 1e-4
    rendered.clear()
    assert run(ckpt_dir, inputs, tmp_path / "both.mp4", "--exp", "audio", "--exp-text", "I am so happy") == 0
    assert (rendered[0][1][0] - exps[0]).abs().max() > 1e-5  # the speech feeds the predictor too


@pytest.mark.parametrize("args,message", [
    (["--pose", "audio", "--pose-flow-checkpoint", "MISSING"], "audio-to-pose checkpoint not found"),
    (["--exp", "audio", "--exp-predictor-checkpoint", "MISSING"], "audio/text-to-expression checkpoint not found"),
    (["--exp-text", "hello", "--exp-predictor-checkpoint", "MISSING"], "audio/text-to-expression checkpoint not found"),
    (["--exp", "happy", "--exp-text", "hello"], "--exp-text combines only with --exp audio"),
])
def test_missing_checkpoint_or_bad_combination_is_one_line(ckpt_dir, inputs, tmp_path, capsys, args, message):
    out = tmp_path / "x.mp4"
    args = [a.replace("MISSING", str(tmp_path / "nope")) for a in args]
    assert run(ckpt_dir, inputs, out, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edtalk: error:") and message in err[0], err
    assert not out.exists()
