"""FactorNet: feature pyramid shapes, config checks, exact save/load, the frozen backbone wrapper."""

import json

import pytest
import torch

from edtalk.errors import CheckpointError
from edtalk.networks.factor_net import (FACTOR_NET_ENV, FactorBackbone, FactorNet, FactorNetConfig,
                                        default_factor_net_dir, load_factor_backbone)


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = FactorNet(FactorNetConfig.tiny() if not kw else FactorNetConfig(**kw))
    with torch.no_grad():  # non-trivial statistics, so the round trip checks every buffer too
        net.target_mean.uniform_(-1, 1)
        net.target_std.uniform_(0.5, 2)
        bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.bias.uniform_(-0.2, 0.2)
            m.momentum = 1.0
        net.train()(torch.rand(8, 3, 32, 32) * 2 - 1)  # batch-norm statistics of real activations
        for m in bns:
            m.momentum = 0.1
    return net.eval()


def test_features_are_five_levels_halving_resolution_with_configured_widths():
    net = _net(channels=(3, 5, 6, 7, 4), hidden=8)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = net.features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 3, 64, 64), (2, 5, 32, 32), (2, 6, 16, 16), (2, 7, 8, 8),
                                              (2, 4, 4, 4)]
    assert all(torch.isfinite(f).all() and f.std() > 0 for f in feats)
    out = net(x)
    assert out.shape == (2, net.config.num_outputs) == (2, 51)
    # predict = de-standardised outputs, split into the configured groups
    pred = net.predict(x)
    assert {k: v.shape[1] for k, v in pred.items()} == {"mouth": 3, "pose": 6, "expression": 6, "blink": 1,
                                                       "identity": 35}
    torch.testing.assert_close(torch.cat(list(pred.values()), 1), out * net.target_std + net.target_mean)


def test_features_of_small_pyramid_levels_keep_all_five_levels():
    net = _net()
    assert [f.shape[-1] for f in net.features(torch.zeros(1, 3, 8, 8))] == [8, 4, 2, 1, 1]
    assert [f.shape[-1] for f in net.features(torch.zeros(1, 3, 128, 128))] == [128, 64, 32, 16, 8]


def test_eval_mode_features_do_not_depend_on_the_rest_of_the_batch():
    # batch norm in eval mode is a fixed per-channel map: a frame's features are its own
    net = _net()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    alone = net.features(x[:1])
    for a, b in zip(alone, net.features(x)):
        torch.testing.assert_close(a, b[:1])


def test_features_depend_on_the_image_and_clamp_it_to_the_valid_range():
    net = _net()
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    b = a.clone()
    b[..., 10:20, 10:20] = -a[..., 10:20, 10:20]
    fa, fb = net.features(a), net.features(b)
    assert all((x - y).abs().max() > 1e-2 * x.abs().max() for x, y in zip(fa, fb))
    over = a * 3
    for x, y in zip(net.features(over), net.features(over.clamp(-1, 1))):
        torch.testing.assert_close(x, y)


def test_config_rejects_bad_sizes_and_widths():
    with pytest.raises(ValueError, match="power of two"):
        FactorNetConfig(size=48)
    with pytest.raises(ValueError, match="5 widths"):
        FactorNetConfig(channels=(8, 8, 8))
    with pytest.raises(ValueError, match="groups"):
        FactorNetConfig(groups={"mouth": 0})


def test_save_and_load_round_trip_is_exact(tmp_path):
    net = _net(seed=3)
    folder = net.save_pretrained(tmp_path / "fn")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "synthtalk_factor_net"
    loaded = FactorNet.from_pretrained(folder)
    assert not loaded.training and loaded.config == net.config
    for (ka, va), (kb, vb) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(net(x), loaded(x))


def test_loading_something_else_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a saved factor network"):
        FactorNet.from_pretrained(tmp_path)
    folder = _net().save_pretrained(tmp_path / "fn")
    data = json.loads((folder / "config.json").read_text())
    data["model_type"] = "edtalk"
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="expected synthtalk_factor_net"):
        FactorNet.from_pretrained(folder)


def test_backbone_is_frozen_stays_in_eval_and_passes_gradients_to_images(tmp_path, monkeypatch):
    net = _net()
    folder = net.save_pretrained(tmp_path / "fn")
    monkeypatch.setenv(FACTOR_NET_ENV, str(folder))
    assert default_factor_net_dir() == folder
    backbone = load_factor_backbone()
    assert isinstance(backbone, FactorBackbone)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training and not backbone.net.training
    x = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    feats = backbone(x)
    assert len(feats) == 5
    sum(f.square().mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(CheckpointError, match=FACTOR_NET_ENV):
        load_factor_backbone(tmp_path / "missing")
