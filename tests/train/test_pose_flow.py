"""Audio-to-pose flow (docs/design.md §8.5): exact inversion and log-determinant, NLL by brute-force change of
variables, training on a tiny SynthTalk tree (the NLL falls), deterministic seeded sampling."""
import math

import numpy as np
import pytest
import torch

from edtalk.data import layout
from edtalk.data.sequence_datasets import PoseSequences, clip_table
from edtalk.networks.audio2lip import load_audio2lip
from edtalk.networks.pose_flow import PoseFlow, PoseFlowConfig, load_pose_flow
from edtalk.train.config import load_train_config
from edtalk.train.stages.pose_flow import PoseFlowStage, clip_nll
from edtalk.train.trainer import train

CONFIG = "configs/train/pose_flow_synthtalk_tiny.yaml"


def _random_flow(seed=0, **kw):
    torch.manual_seed(seed)
    flow = PoseFlow(PoseFlowConfig.tiny(history=3, context=1, audio_dim=5, steps=3, **kw)).eval()
    with torch.no_grad():  # leave the identity-like init: every block must matter
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def _condition(flow, poses, audio):
    x = flow.standardise(poses)
    return x[:, flow.config.history:], torch.cat([flow.history_condition(x), flow.audio_condition(audio)], -1)


def test_inversion_and_log_determinant_are_exact():
    flow = _random_flow()
    flow.set_pose_stats(torch.linspace(-1, 1, 6), torch.linspace(0.5, 2, 6))
    g = torch.Generator().manual_seed(1)
    poses, audio = torch.randn(2, 3 + 5, 6, generator=g), torch.randn(2, 5 + 2, 5, generator=g)
    x, cond = _condition(flow, poses, audio)
    z, logdet, _ = flow.to_latent(x, cond)
    back, _ = flow.from_latent(z, cond)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    assert (z - x).abs().max() > 0.1  # not the identity
    # Brute force: the Jacobian of the whole sequence x_1..T → z_1..T (block lower-triangular
    # through the LSTM state) has log|det| = Σ_t log|det J_t|, and the NLL follows from it.
    T = x.shape[1]
    jac = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v.view(1, T, 6), cond[:1])[0].flatten(),
                                             x[:1].flatten())
    sign, logabs = torch.linalg.slogdet(jac.double())
    torch.testing.assert_close(logabs.float(), logdet[0].sum(), atol=1e-4, rtol=1e-5)
    nll = (0.5 * z[0].pow(2).sum() + 0.5 * T * 6 * math.log(2 * math.pi) - logabs) / T
    torch.testing.assert_close(flow.nll(poses[:1], audio[:1]), nll.float(), atol=1e-4, rtol=1e-5)


def test_sampling_is_deterministic_per_seed_and_temperature_zero_is_the_mode_path():
    flow = _random_flow(seed=2)
    audio, seed_pose = torch.randn(1, 9, 5), torch.randn(1, 6)

    def sample(seed, tau):
        return flow.sample(audio, seed_pose, temperature=tau, generator=torch.Generator().manual_seed(seed))

    a, b, c = sample(1, 0.7), sample(1, 0.7), sample(2, 0.7)
    assert a.shape == (1, 9, 6) and torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    torch.testing.assert_close(sample(1, 0.0), sample(5, 0.0), atol=0, rtol=0)
    # clamp: never beyond ±3σ of the de-standardised pose
    wild = flow.sample(audio, seed_pose, temperature=50.0, generator=torch.Generator().manual_seed(3), smooth=False)
    assert float(((wild - flow.pose_mean) / flow.pose_std).abs().max()) <= 3.0 + 1e-5


@pytest.fixture(scope="module")
def pose_tree(motion_tree):
    """A private copy of the session tree with the α cache of a tiny random EDTalk, + Audio2Lip."""
    return motion_tree("pose_flow", ("pose",))


def test_items_are_windows_of_the_clip(pose_tree):
    root, a2l = pose_tree
    table = clip_table(root, layout.read_split(root, "train"), load_audio2lip(a2l), "pose")
    ds = PoseSequences(table, seq_len=6, history=4, context=2, seed=3, length=5)
    for i in range(len(ds)):
        p, item = ds.plan(i), ds[i]
        t, s = table[p["clip"]], p["start"]
        assert item["poses"].shape == (10, 6) and item["audio"].shape == (10, t["audio"].shape[1])
        torch.testing.assert_close(item["poses"][4:], t["motion"][s:s + 6])
        torch.testing.assert_close(item["audio"][2:8], t["audio"][s:s + 6])
        assert torch.equal(ds[i]["poses"], item["poses"])  # a pure function of (seed, epoch, index)


def test_training_lowers_the_nll_and_exports_what_generation_loads(pose_tree, tmp_path):
    root, a2l = pose_tree
    overrides = [f"data.root={root}", f"model.audio2lip={a2l}", f"run.dir={tmp_path}", "run.progress=false"]
    cfg = load_train_config(CONFIG, overrides)
    torch.manual_seed(0)
    untrained = PoseFlowStage(cfg, torch.device("cpu")).build_models()["flow"].eval()
    result = train(cfg)
    flow, audio2lip = load_pose_flow(result.exports[0])
    assert torch.equal(flow.pose_std, untrained.pose_std) and float(flow.pose_std.min()) > 0
    table = clip_table(root, layout.read_split(root, "train"), audio2lip, "pose")
    before = np.mean([clip_nll(untrained, t["motion"], t["audio"]) for t in table.values()])
    after = np.mean([clip_nll(flow, t["motion"], t["audio"]) for t in table.values()])
    assert after < before - 1.0, (before, after)


def test_frame_log_rms_is_per_video_frame():
    from edtalk.audio import frame_log_rms

    wav = np.concatenate([np.zeros(640), np.full(640, 0.5), -np.full(640, 0.01), np.ones(100)]).astype(np.float32)
    np.testing.assert_allclose(frame_log_rms(wav), np.log10([1e-4, 0.5 + 1e-4, 0.01 + 1e-4]), rtol=1e-6)


def test_energy_flow_trains_on_loudness_and_generation_feeds_it(pose_tree, tmp_path):
    from edtalk.audio import frame_log_rms, load_audio, mel_windows
    from edtalk.audio_features import audio_embeddings, with_energy
    from edtalk.pipelines.audio_drivers import audio_pose_sequence

    root, a2l = pose_tree
    name = layout.read_split(root, "train")[0]
    plain = clip_table(root, [name], load_audio2lip(a2l), "pose")[name]["audio"]
    table = clip_table(root, [name], load_audio2lip(a2l), "pose", energy=True)[name]["audio"]
    wav = load_audio(str(layout.clip_path(root, "audio", name)))
    assert torch.equal(table[:, :-1], plain) and torch.equal(table[:, -1], torch.from_numpy(frame_log_rms(wav)))
    cfg = load_train_config(CONFIG, [f"data.root={root}", f"model.audio2lip={a2l}", f"run.dir={tmp_path}",
                                     "run.progress=false", "model.flow.energy=true", "train.max_steps=3"])
    flow, _ = load_pose_flow(train(cfg).exports[0])
    assert flow.config.energy and flow.config.audio_dim == plain.shape[1] + 1

    class Opts:  # what audio_pose_sequence reads of the generation options
        pose_flow_checkpoint, checkpoint_dir, seed, pose_temperature = str(tmp_path / "export"), "unused", 0, 0.7

    poses = audio_pose_sequence(Opts, wav, torch.zeros(1, 6))
    flow, audio2lip = load_pose_flow(tmp_path / "export")
    audio = with_energy(audio_embeddings(audio2lip, mel_windows(wav)), wav)
    expected = flow.sample(audio[None], torch.zeros(1, 6), 0.7, generator=torch.Generator().manual_seed(0))[0]
    assert poses.shape == (len(plain), 6) and torch.allclose(poses, expected)
    zeroed = torch.cat([audio[:, :-1], torch.zeros_like(audio[:, -1:])], 1)  # the flow reads the loudness
    assert not torch.allclose(flow.sample(zeroed[None], torch.zeros(1, 6), 0.7,
                                          generator=torch.Generator().manual_seed(0))[0], expected)
