"""Generator initialisation: LIA vox.pt conversion (docs/design.md §4.3), official .pt, freezing."""
import pytest
import torch

from edtalk import EDTalk
from edtalk.config import EDTalkConfig
from edtalk.errors import EDTalkError
from edtalk.train.init import convert_lia, init_generator, lip_pose_subset


def fake_lia_state_dict(seed=0):
    """A tiny LIA generator's keys: enc.net_app.*, enc.fc.0-4, dec.* and dec.direction.weight."""
    torch.manual_seed(seed)
    donor = EDTalk(EDTalkConfig.tiny(exp_dim=0))
    sd = {}
    for k, v in donor.state_dict().items():
        if k.startswith(("enc.net_app.", "dec.")):
            sd[k] = v.clone()
        elif k.startswith("fc."):
            sd["enc." + k] = v.clone()
    latent = donor.config.latent_dim
    sd["enc.fc.4.weight"] = torch.randn(20, latent)
    sd["enc.fc.4.bias"] = torch.zeros(20)
    sd["dec.direction.weight"] = torch.randn(latent, 20)
    return sd


def test_lia_conversion_copies_encoder_decoder_and_shared_mlp():
    lia = fake_lia_state_dict()
    model, copied = convert_lia(lia, seed=3)
    sd = model.state_dict()
    assert model.config.size == 64 and model.config.latent_dim == 64 and not model.has_expression
    for k, v in lia.items():
        if k.startswith(("enc.net_app.", "dec.")) and k != "dec.direction.weight":
            assert torch.equal(sd[k], v), k
    for i in range(4):
        assert torch.equal(sd[f"fc.{i}.weight"], lia[f"enc.fc.{i}.weight"])
        assert torch.equal(sd[f"fc.{i}.bias"], lia[f"enc.fc.{i}.bias"])
    assert not any(k.startswith("enc.fc") or "direction.weight" == k[4:] for k in copied)
    # Fresh banks and heads (seeded): W26 [latent, 26] ~ N(0,1), not LIA's direction.
    w26 = sd["direction_lipnonlip.weight"]
    assert w26.shape == (64, 26) and 0.8 < w26.std() < 1.2
    again, _ = convert_lia(lia, seed=3)
    assert torch.equal(again.state_dict()["lip_fc.2.weight"], sd["lip_fc.2.weight"])
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64) * 2 - 1
        assert torch.isfinite(model(x, x)).all()


def test_lia_conversion_rejects_other_dicts():
    lia = fake_lia_state_dict()
    with pytest.raises(EDTalkError, match="not a LIA"):
        convert_lia({k: v for k, v in lia.items() if k != "dec.direction.weight"})
    bad = dict(lia)
    bad["dec.conv1.conv.weight"] = bad["dec.conv1.conv.weight"][:, :1]
    with pytest.raises(EDTalkError, match="shape"):
        convert_lia(bad)


def test_init_from_lia_file_and_official_files(tmp_path):
    lia = fake_lia_state_dict()
    torch.save({"gen": lia}, tmp_path / "vox.pt")
    model, dis = init_generator("lia", str(tmp_path / "vox.pt"), EDTalkConfig.tiny(exp_dim=0), seed=0)
    assert dis is None and torch.equal(model.state_dict()["fc.2.weight"], lia["enc.fc.2.weight"])
    # A full EDTalk.pt initialises the lip-pose model with its lip-pose keys.
    full = EDTalk(EDTalkConfig.tiny())
    torch.save({"gen": full.state_dict(), "dis": {}}, tmp_path / "EDTalk.pt")
    model, _ = init_generator("official", str(tmp_path / "EDTalk.pt"), EDTalkConfig.tiny(exp_dim=0), seed=0)
    assert not model.has_expression
    assert model.state_dict().keys() == lip_pose_subset(full.state_dict()).keys()
    with pytest.raises(EDTalkError, match="init_path"):
        init_generator("lia", None, EDTalkConfig.tiny(exp_dim=0), seed=0)
    with pytest.raises(EDTalkError, match="model.init"):
        init_generator("imagenet", "x", EDTalkConfig.tiny(exp_dim=0), seed=0)


def test_freeze_prefixes_leave_optimisers(synth_tree, tmp_path):
    from edtalk.train.config import load_train_config
    from edtalk.train.trainer import Trainer

    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "train" / "stage1_synthtalk_tiny.yaml"
    cfg = load_train_config(str(config), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "data.length=8",
                                      "train.freeze=[gen.enc,gen.dec]"])
    trainer = Trainer(cfg)
    gen = trainer.models["gen"]
    in_opt = {id(p) for g in trainer.optimizers["gen"].param_groups for p in g["params"]}
    assert not any(id(p) in in_opt or p.requires_grad for p in gen.enc.parameters())
    assert not any(id(p) in in_opt for p in gen.dec.parameters())
    assert id(gen.direction_lipnonlip.weight) in in_opt and id(gen.lip_fc[0].weight) in in_opt
    cfg.train.freeze = ["gen.nothing"]
    with pytest.raises(EDTalkError, match="matches no parameter"):
        Trainer(cfg)


def test_identity_flow_init_warps_the_source_in_place():
    cfg = EDTalkConfig.tiny(exp_dim=0)
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    outputs = {}
    for flow_init in ("random", "identity"):
        model, _ = init_generator("scratch", None, cfg, seed=3, flow_init=flow_init)
        _, feats = model.encode(source)
        z1, z2 = torch.randn(2, 1, cfg.latent_dim)
        with torch.no_grad():
            outputs[flow_init] = [model.dec(z, feats) for z in (z1, z2)]
    # zero flow and mask ½ everywhere: the output no longer depends on the motion latent at step 0
    assert torch.equal(outputs["identity"][0], outputs["identity"][1])
    assert not torch.allclose(outputs["random"][0], outputs["random"][1])
    with pytest.raises(EDTalkError, match="flow_init"):
        init_generator("scratch", None, cfg, seed=3, flow_init="zero")
