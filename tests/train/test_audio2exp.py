"""Audio/text-to-expression (docs/design.md §8.6): modality dropout masks and training on a tiny SynthTalk
tree (the loss falls).  The text reader itself: tests/test_text_emotion.py."""

import pytest
import torch

from edtalk.networks.expression_predictor import ExpressionPredictor, load_expression_predictor, modality_keep
from edtalk.train.config import load_train_config
from edtalk.train.stages.audio2exp import Audio2ExpStage
from edtalk.train.trainer import train

CONFIG = "configs/train/audio2exp_synthtalk_tiny.yaml"


def test_modality_dropout_masks_follow_the_spec():
    r = torch.tensor([0.9, 0.51, 0.5, 0.3, 0.25, 0.249, 0.0])
    keep_audio, keep_text = modality_keep(r)
    assert keep_audio.tolist() == [1, 1, 0, 0, 0, 1, 1]   # 0.25 ≤ r ≤ 0.5 zeroes the audio
    assert keep_text.tolist() == [1, 1, 1, 1, 1, 0, 0]    # r < 0.25 zeroes the text


@pytest.fixture(scope="module")
def exp_tree(motion_tree):
    return motion_tree("audio2exp", ("exp",))


def _loss(stage, net, r):
    d = stage.build_dataset()
    batch = torch.utils.data.default_collate([d[i] for i in range(len(d.audio))])
    batch["r"] = torch.full_like(batch["r"], r)
    with torch.no_grad():
        return stage.losses(net.eval(), batch), batch


def test_dropped_modality_does_not_reach_the_heads(exp_tree, tmp_path):
    root, a2l = exp_tree
    cfg = load_train_config(CONFIG, [f"data.root={root}", f"model.audio2lip={a2l}", f"run.dir={tmp_path}"])
    stage = Audio2ExpStage(cfg, torch.device("cpu"))
    net = stage.build_models()["predictor"]
    _, batch = _loss(stage, net, 0.9)
    for r, field in ((0.1, "text"), (0.4, "audio")):  # r < 0.25 drops text; 0.25–0.5 drops audio
        keep_a, keep_t = modality_keep(torch.full((len(batch["r"]),), r))
        a = (batch["audio"] - net.audio_mean) / net.audio_std
        base = net.heads(a, batch["text"], keep_a, keep_t)[0]
        noisy = dict(batch)
        noisy[field] = batch[field] + 5 * torch.randn_like(batch[field])
        a2 = (noisy["audio"] - net.audio_mean) / net.audio_std
        torch.testing.assert_close(net.heads(a2, noisy["text"], keep_a, keep_t)[0], base)
        assert stage.losses(net, {**noisy, "r": torch.full_like(batch["r"], r)})["mse"] == \
            stage.losses(net, {**batch, "r": torch.full_like(batch["r"], r)})["mse"]


def test_training_lowers_the_loss_and_the_export_predicts(exp_tree, tmp_path):
    root, a2l = exp_tree
    cfg = load_train_config(CONFIG, [f"data.root={root}", f"model.audio2lip={a2l}", f"run.dir={tmp_path}",
                                     "run.progress=false"])
    stage = Audio2ExpStage(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    untrained = stage.build_models()["predictor"]
    result = train(cfg)
    net, audio2lip, text_encoder = load_expression_predictor(result.exports[0])
    assert text_encoder == "lexicon" and isinstance(net, ExpressionPredictor)
    before, _ = _loss(stage, untrained, 0.9)
    after, batch = _loss(stage, net, 0.9)
    total = lambda t: float(sum(t.values()))  # noqa: E731
    assert total(after) < 0.5 * total(before), (before, after)
    exp, logits = net(audio=batch["audio"][:2], text=None)
    assert exp.shape == (2, 10) and logits.shape == (2, 8)
