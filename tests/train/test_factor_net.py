"""The SynthTalk factor network as trained and shipped: data targets, the trainer stage, the
registered perceptual backbone, and what the shipped weights see (mouth opening, held-out
identity)."""

import json

import numpy as np
import pytest
import torch

from edtalk.data import synthtalk as st
from edtalk.data.synthtalk_render import Identity
from edtalk.networks.factor_net import (IDENTITY_NAMES, FactorBackbone, FactorNet, FactorNetConfig,
                                        default_factor_net_dir, load_factor_backbone)
from edtalk.train.factor_net import factor_loss, identity_targets, images_from_uint8, load_factor_frames
from edtalk.train.losses import PyramidPerceptualLoss, build_backbone

SHIPPED = default_factor_net_dir()


# ----------------------------------------------------------------------------- targets


def test_identity_targets_are_the_visible_attributes_with_a_style_one_hot():
    ident = Identity(face_w=1.05, skin=(0.9, 0.7, 0.6), hair_style="fringe", hairline=3.0, bg_bottom=(0.1, 0.2, 0.3),
                     f0=180.0, tract=1.1)
    t = dict(zip(IDENTITY_NAMES, identity_targets(ident.vector()[None])[0]))
    assert len(t) == 35
    assert t["face_w"] == pytest.approx(1.05) and t["skin_g"] == pytest.approx(0.7)
    assert (t["style_short"], t["style_long"], t["style_fringe"], t["style_bald"]) == (0, 0, 1, 0)
    assert t["hairline"] == pytest.approx(3.0) and t["bg_bottom_b"] == pytest.approx(0.3)
    assert 180.0 not in t.values()  # the voice is not visible


def test_factor_loss_weights_groups_after_averaging_within_them():
    net = FactorNet(FactorNetConfig.tiny())
    target = torch.zeros(2, 51)
    out = torch.zeros(2, 51)
    out[:, 0] = 3.0     # mouth: one of 3 columns off by 3 → group mean 3
    out[:, 16:] = 1.0   # identity: all 35 columns off by 1 → group mean 1
    terms = factor_loss(net, out, target, {"identity": 0.5})
    assert float(terms["mouth"]) == pytest.approx(3.0) and float(terms["identity"]) == pytest.approx(1.0)
    assert float(terms["pose"]) == 0.0
    assert float(terms["loss"]) == pytest.approx(3.0 + 0.5)


# ----------------------------------------------------------------------------- the stage in the trainer


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    st.generate(out, kind="mead", size=32, seed=3, speakers=2, emotions=("neutral", "happy"), levels=(1,),
                frames=8, mel=False, validate=False)
    return out / "mead"


def test_frames_and_targets_of_a_tree_match_its_factor_files(tiny_tree, tmp_path):
    data = load_factor_frames(tiny_tree, "train", cache=tmp_path / "c.npz")
    assert data.frames.shape == (16, 32, 32, 3) and data.frames.dtype == np.uint8
    assert data.targets.shape == (16, 51) and len(data.names) == 2
    with np.load(tiny_tree / "factors" / f"{data.names[1]}.npz") as fz:
        np.testing.assert_array_equal(data.targets[data.groups == 1, :3], fz["mouth"])
        np.testing.assert_array_equal(data.targets[data.groups == 1, 15], fz["blink"])
        np.testing.assert_allclose(data.targets[data.groups == 1, 16:][0], identity_targets(fz["identity"][None])[0])
    cached = load_factor_frames(tiny_tree, "train", cache=tmp_path / "c.npz")
    np.testing.assert_array_equal(cached.frames, data.frames)


def test_stage_trains_in_the_trainer_and_exports_a_loadable_backbone(tiny_tree, tmp_path):
    from edtalk.train.config import load_train_config
    from edtalk.train.trainer import Trainer

    cfg = load_train_config("configs/train/factor_net_tiny.yaml",
                            [f"data.root={tiny_tree}", f"run.dir={tmp_path / 'run'}", "train.max_steps=4"])
    trainer = Trainer(cfg)
    net = trainer.models["net"]
    # targets are standardised with the training split's statistics, stored in the network
    data = load_factor_frames(tiny_tree, "train")
    np.testing.assert_allclose(net.target_mean.numpy(), data.targets.mean(0), rtol=1e-5, atol=1e-6)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = trainer.train()
    assert result.step == 4 and np.isfinite(result.last_logs["loss"])
    assert not torch.equal(before["head.3.weight"], net.head[3].weight)
    folder = tmp_path / "run" / "export" / "synthtalk_factor_net"
    exported = FactorNet.from_pretrained(folder)
    ema = trainer.ema["net"]
    for k, v in ema.state_dict().items():
        assert torch.equal(exported.state_dict()[k], v), k
    report = json.loads((folder / "eval.json").read_text())
    assert report["split"] == "test" and report["frames"] == 16
    assert set(report["r2"]) == {"mouth", "pose", "expression", "blink", "identity", "mouth_open"}
    # the loss config's name for it builds the same network as a frozen backbone
    backbone = build_backbone("synthtalk_factor_net", {"weights": str(folder)})
    assert isinstance(backbone, FactorBackbone)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for a, b in zip(backbone(x), exported.features(x)):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- the shipped weights


def _held_out_identity():
    # SynthTalk trees draw identities from default_rng([seed, 1|2, k, 0]); this stream is none of them.
    return st.sample_identity(np.random.default_rng([20261125, 9]))


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.fail(f"the shipped factor network is missing: {SHIPPED}")
    return FactorNet.from_pretrained(SHIPPED)


def test_shipped_weights_read_the_mouth_opening_of_an_unseen_speaker(shipped):
    clip = st.make_clip(_held_out_identity(), 40, size=shipped.config.size, rng=np.random.default_rng(5),
                        emotion="happy", level=2)
    with torch.no_grad():
        pred = shipped.predict(images_from_uint8(clip["frames"]))["mouth"][:, 0].numpy()
    truth = clip["factors"]["mouth"][:, 0]
    assert truth.std() > 0.2
    assert np.corrcoef(pred, truth)[0, 1] > 0.8


def _mouth_series(size, opens):
    """Frames of one identity and one fixed pose/expression that differ only in mouth opening."""
    n = len(opens)
    factors = {"mouth": np.stack([opens, np.zeros(n), np.zeros(n)], 1).astype(np.float32),
               "pose": np.tile(np.array([0.05, -0.03, 0.02, 0.0, 0.0, 1.0], np.float32), (n, 1)),
               "expression": np.zeros((n, 6), np.float32), "blink": np.zeros(n, np.float32)}
    clip = st.make_clip(_held_out_identity(), n, size=size, factors=factors)
    return images_from_uint8(clip["frames"])


def test_shipped_perceptual_distance_grows_with_the_mouth_opening_difference():
    backbone = load_factor_backbone()
    loss = PyramidPerceptualLoss(backbone)
    frames = _mouth_series(backbone.net.config.size, [0.0, 0.25, 0.5, 0.75, 1.0])
    with torch.no_grad():
        dist = [float(loss(frames[i:i + 1], frames[:1])) for i in range(len(frames))]
    assert dist[0] == 0.0
    assert all(b > a for a, b in zip(dist, dist[1:])), dist
    assert dist[1] > 0.05 * dist[-1]  # a quarter of an opening is not lost in the noise


def test_factor_head_layer_is_the_nets_own_prediction():
    plain = build_backbone("synthtalk_factor_net", {})
    headed = build_backbone("synthtalk_factor_net", {"factor_head": True})
    frames = _mouth_series(headed.net.config.size, [0.0, 1.0])
    with torch.no_grad():
        a, b = plain(frames), headed(frames)
        assert len(b) == len(a) + 1 and all(torch.equal(x, y) for x, y in zip(a, b))
        # batch norm folded into the convs: the same map up to float rounding
        assert torch.allclose(b[-1], headed.net(frames), rtol=1e-4, atol=1e-5)
        # the shipped net reads the opening off the last layer: closed vs open differ in the mouth column
        opening = headed.net.split(b[-1])["mouth"][:, 0] * headed.net.target_std[0] + headed.net.target_mean[0]
    assert opening[1] - opening[0] > 0.5


def test_backbone_folds_batch_norm_into_the_same_map():
    """The backbone's folded convs equal the net's conv → eval batch norm (non-trivial BN stats)."""
    backbone = build_backbone("synthtalk_factor_net", {})
    frames = _mouth_series(backbone.net.config.size, [0.0, 0.5, 1.0])
    with torch.no_grad():
        folded, reference = backbone(frames), backbone.net.features(frames)
    assert len(folded) == len(reference) == 5
    for f, r in zip(folded, reference):
        assert (f - r).abs().max() <= 1e-5 * r.abs().max()
    # folding is not a no-op: without the batch-norm statistics the features differ
    first = backbone.net.levels[0]
    raw = torch.nn.functional.leaky_relu(first[0](frames.clamp(-1, 1)), 0.2)
    assert (raw - reference[0]).abs().max() > 1e-2
