"""The model core: every model saves and loads through one schema; one resolver finds models."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edtalk import CheckpointError
from edtalk.checkpoints import ModelLocation, find_model, locate_model, saved_config
from edtalk.config import Audio2LipConfig, DiscriminatorConfig, EDTalkConfig
from edtalk.model import EDTalk
from edtalk.networks.audio2lip import Audio2Lip
from edtalk.networks.discriminator import Discriminator
from edtalk.networks.expression_predictor import (AudioToExpression, ExpressionPredictor, ExpressionPredictorConfig,
                                                  load_expression_predictor, save_expression_predictor)
from edtalk.networks.factor_net import FactorNet, FactorNetConfig
from edtalk.networks.pose_flow import AudioToPose, PoseFlow, PoseFlowConfig, load_pose_flow, save_pose_flow
from edtalk.networks.syncnet import SyncNet, SyncNetConfig
from edtalk.testing import official_like_state_dict

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"


def _randomised(model, seed):
    """`model` with random weights everywhere (buffers included), so a wrong load shows."""
    model.load_state_dict(official_like_state_dict(model, seed=seed))
    return model.eval()


def _tiny_models():
    a2l = lambda: Audio2Lip(Audio2LipConfig.tiny())  # noqa: E731
    return {
        "edtalk": EDTalk(EDTalkConfig.tiny()),
        "lip_pose": EDTalk(EDTalkConfig.tiny(exp_dim=0)),
        "audio2lip": a2l(),
        "syncnet": SyncNet(SyncNetConfig.tiny()),
        "factor_net": FactorNet(FactorNetConfig.tiny()),
        "discriminator": Discriminator(DiscriminatorConfig.tiny()),
        "pose_flow": AudioToPose.of(PoseFlow(PoseFlowConfig(audio_dim=16, audio_proj=4, steps=2, hidden=8)), a2l()),
        "audio2exp": AudioToExpression.of(ExpressionPredictor(ExpressionPredictorConfig.tiny(audio_dim=32)), a2l(),
                                          "lexicon"),
    }


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", list(_tiny_models()))
def test_every_model_round_trips_through_one_schema(tmp_path, name):
    model = _randomised(_tiny_models()[name], seed=3)
    folder = model.save_pretrained(tmp_path / name)
    data = json.loads((folder / "config.json").read_text())
    assert data["model_type"] == model.model_type and isinstance(data["config"], dict)
    assert "model_type" not in data["config"]  # named once, at the top
    assert set(data) - {"model_type"} == set(model.init_arguments())
    loaded = type(model).from_pretrained(folder)
    assert not loaded.training and _same_weights(model, loaded)
    assert loaded.init_arguments().keys() == model.init_arguments().keys()


def test_composites_keep_the_old_weight_names_and_their_frozen_audio2lip(tmp_path):
    models = _tiny_models()
    flow, audio2exp = models["pose_flow"], models["audio2exp"]
    save_pose_flow(tmp_path / "pose_flow", flow.pose_flow, flow.audio2lip)
    save_expression_predictor(tmp_path / "audio2exp", audio2exp.audio2exp, audio2exp.audio2lip, "my_encoder")
    keys = load_file(str(tmp_path / "pose_flow" / "model.safetensors"))
    assert {k.split(".")[0] for k in keys} == {"pose_flow", "audio2lip"}
    net, a2l = load_pose_flow(tmp_path)  # a folder holding pose_flow/ (a checkpoint dir or export/)
    assert _same_weights(net, flow.pose_flow) and _same_weights(a2l, flow.audio2lip)
    assert not any(p.requires_grad for p in [*net.parameters(), *a2l.parameters()])
    predictor, a2l, encoder = load_expression_predictor(tmp_path / "audio2exp")
    assert encoder == "my_encoder" and _same_weights(predictor, audio2exp.audio2exp)


def _write_legacy(folder: Path, data: dict):
    (folder / "config.json").write_text(json.dumps(data))


def test_folders_saved_with_the_old_schemas_still_load(tmp_path):
    models = {k: _randomised(m, seed=5) for k, m in _tiny_models().items()}
    # The flat schema: the config's fields beside model_type (EDTalk also without model_type at all).
    gen = models["edtalk"].save_pretrained(tmp_path / "gen")
    fields = json.loads((gen / "config.json").read_text())["config"]
    _write_legacy(gen, fields)
    assert _same_weights(EDTalk.from_pretrained(gen), models["edtalk"])
    sync = models["syncnet"].save_pretrained(tmp_path / "sync")
    _write_legacy(sync, {"model_type": "syncnet", **json.loads((sync / "config.json").read_text())["config"]})
    assert _same_weights(SyncNet.from_pretrained(sync), models["syncnet"])
    assert saved_config(sync) == saved_config(models["syncnet"].save_pretrained(tmp_path / "sync_new"))
    # The bundle schema: no audio2lip config (read off the weights), audio2exp with its text encoder.
    flow = models["pose_flow"].save_pretrained(tmp_path / "pose_flow")
    _write_legacy(flow, {"model_type": "pose_flow", "config": json.loads((flow / "config.json").read_text())["config"]})
    loaded = AudioToPose.from_pretrained(flow)
    assert loaded.audio2lip.config.channels == Audio2LipConfig.tiny().channels
    assert _same_weights(loaded, models["pose_flow"])
    exp = models["audio2exp"].save_pretrained(tmp_path / "audio2exp")
    old = json.loads((exp / "config.json").read_text())
    _write_legacy(exp, {"model_type": "audio2exp", "config": old["config"], "text_encoder": "lexicon"})
    assert _same_weights(AudioToExpression.from_pretrained(exp), models["audio2exp"])


SHIPPED_MODELS = [(EDTalk, "synthtalk/EDTalk"), (EDTalk, "synthtalk/EDTalk_lip_pose"),
                  (Audio2Lip, "synthtalk/Audio2Lip"), (SyncNet, "synthtalk/syncnet"), (AudioToPose, "synthtalk/pose_flow"),
                  (AudioToExpression, "synthtalk/audio2exp"), (FactorNet, "synthtalk_factor_net")]


@pytest.mark.parametrize("cls,folder", SHIPPED_MODELS, ids=[f for _, f in SHIPPED_MODELS])
def test_shipped_folders_use_the_one_schema_and_load_exactly(cls, folder):
    folder = SHIPPED / folder
    data = json.loads((folder / "config.json").read_text())
    assert data["model_type"] == cls.model_type and set(data) - {"model_type"} >= {"config"}
    model = cls.from_pretrained(folder)
    weights = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_official_files_load_through_from_pretrained_and_unsafe_ones_are_refused(tmp_path):
    full = EDTalk(EDTalkConfig.tiny())
    sd = official_like_state_dict(full, seed=2)
    torch.save({"gen": sd}, tmp_path / "EDTalk.pt")
    loaded = EDTalk.from_pretrained(tmp_path / "EDTalk.pt")
    assert torch.equal(loaded.direction_exp.weight, sd["direction_exp.weight"])
    assert _same_weights(EDTalk.from_pretrained(tmp_path), loaded)  # the checkpoint folder: EDTalk.pt by name
    sync = _randomised(SyncNet(SyncNetConfig.tiny()), seed=4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sync.state_dict().items()}}, tmp_path / "expert.pth")
    assert _same_weights(SyncNet.from_pretrained(tmp_path / "expert.pth"), sync)
    torch.save({"gen": sd, "args": print}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load .*print"):
        EDTalk.from_pretrained(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="no official .pt format"):
        FactorNet.from_pretrained(tmp_path / "EDTalk.pt")


def test_a_config_that_does_not_fit_is_one_clear_error(tmp_path):
    folder = Audio2Lip(Audio2LipConfig.tiny()).save_pretrained(tmp_path / "a2l")
    data = json.loads((folder / "config.json").read_text())
    data["config"]["colour"] = "blue"
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"does not describe a valid Audio2Lip .*colour"):
        Audio2Lip.from_pretrained(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        Audio2Lip.from_pretrained(folder)


# ----------------------------------------------------------------------------- the resolver

def _saved(folder: Path, model_type: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def test_resolver_reads_files_folders_checkpoint_dirs_and_runs(tmp_path):
    pt = tmp_path / "x.pt"
    pt.write_bytes(b"")
    assert find_model(pt, "edtalk") == ModelLocation(pt, True)
    model = _saved(tmp_path / "run" / "export" / "model", "edtalk")
    assert find_model(model, "edtalk") == ModelLocation(model, False)
    assert find_model(tmp_path / "run", "edtalk") == ModelLocation(model, False)
    assert find_model(tmp_path / "run", "audio2lip") is None  # export/model holds another type
    step = tmp_path / "run" / "export" / "000200.pt"
    (tmp_path / "run" / "export" / "000100.pt").write_bytes(b"")
    step.write_bytes(b"")
    assert find_model(tmp_path / "run", "edtalk") == ModelLocation(model, False)
    assert find_model(tmp_path / "run", "edtalk", prefer_official=True) == ModelLocation(step, True)
    # A checkpoint folder: the named file first, then the named saved folder.
    ckpt = tmp_path / "ckpt"
    lip_pose = _saved(ckpt / "EDTalk_lip_pose", "edtalk")
    _saved(ckpt / "EDTalk", "edtalk")
    names = ("EDTalk_lip_pose.pt", "EDTalk_lip_pose")
    assert find_model(ckpt, "edtalk", names) == ModelLocation(lip_pose, False)
    (ckpt / "EDTalk_lip_pose.pt").write_bytes(b"")
    assert find_model(ckpt, "edtalk", names) == ModelLocation(ckpt / "EDTalk_lip_pose.pt", True)
    assert find_model(ckpt, "", ("Audio2Lip.pt", "Audio2Lip"), named_only=True) is None
    with pytest.raises(CheckpointError, match="several edtalk models .*EDTalk, EDTalk_lip_pose"):
        find_model(ckpt, "edtalk")


def test_resolver_errors_say_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match=r"^pose-flow checkpoint not found: .*nope \(train one"):
        AudioToPose.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is not a saved SyncNet expert and holds none"):
        SyncNet.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="model not found"):
        locate_model(tmp_path / "nope", "edtalk")
    audio2lip = Audio2Lip(Audio2LipConfig.tiny()).save_pretrained(tmp_path / "Audio2Lip")
    with pytest.raises(CheckpointError, match="holds a audio2lip model, expected edtalk"):
        EDTalk.from_pretrained(audio2lip)
