"""scripts/render_ceiling.py and edtalk.eval.render_ceiling: expression-only pairs and the fits."""
import json

import pytest
import torch

from edtalk.config import EDTalkConfig
from edtalk.data import synthtalk as st
from edtalk.errors import InputError
from edtalk.eval.render_ceiling import changed_pixels, expression_pairs, render_ceiling
from edtalk.train.init import init_generator

TINY = EDTalkConfig(size=64, latent_dim=40, channels={4: 8, 8: 8, 16: 8, 32: 8, 64: 8}, exp_dim=0)


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("shared")
    st.generate(out, kind="mead", speakers=4, emotions=("neutral", "surprised"), levels=(1, 3), frames=6,
                mel=False, validate=False, shared_motion=True, exp_scale=2.0, seed=2)
    return out / "mead"


def test_pairs_differ_only_where_the_expression_is(shared_tree, tmp_path):
    source, target = expression_pairs(shared_tree, count=3, seed=1)
    assert source.shape == target.shape == (3, 3, 64, 64)
    mask = changed_pixels(source, target)
    # surprised at level 3, drawn twice as large: a few % of the frame changes, the rest is identical
    assert 0.005 < mask.float().mean() < 0.2
    moved = (source - target).abs().amax(1) > 0.02
    assert moved.float().mean() < 0.3  # the head, pose and mouth did not move: most pixels are equal
    assert moved[:, :8, :8].sum() == 0 and moved[:, :8, -8:].sum() == 0  # the background is untouched
    with pytest.raises(InputError, match=r"\(train\) has 3 emotional clips of level 3, 4 asked"):
        expression_pairs(shared_tree, count=4)
    st.generate(tmp_path / "plain", kind="mead", speakers=2, emotions=("neutral", "surprised"), levels=(3,),
                frames=4, mel=False, validate=False)
    with pytest.raises(InputError, match="shared-motion"):
        expression_pairs(tmp_path / "plain" / "mead", count=1)


def test_latent_fit_keeps_the_weights_and_weight_fit_learns(shared_tree):
    source, target = expression_pairs(shared_tree, count=2, seed=1)
    torch.manual_seed(0)
    model = init_generator("scratch", None, TINY, 0, "identity")[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fit = render_ceiling(model, source, target, "weights", steps=40, every=10)
    assert [s for s, _, _ in fit["curve"]] == [0, 10, 20, 30, 40]
    assert fit["after"]["frame"] < 0.7 * fit["before"]["frame"]
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        own = (model(target, target) - target).abs().mean(1, keepdim=True)[changed_pixels(source, target)].mean()
    assert fit["floor"] == pytest.approx(own.item(), rel=1e-5)
    # the latent fit on the trained model: its weights stay, only z moves
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        frame0 = (model(source, target) - target).abs().mean().item()
    lat = render_ceiling(model, source, target, "latent", steps=20)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert lat["before"]["frame"] == pytest.approx(frame0, rel=1e-5)
    mask = changed_pixels(source, target)
    assert lat["copy"] == pytest.approx((source - target).abs().mean(1, keepdim=True)[mask].mean().item(), rel=1e-6)
    assert lat["copy_frame"] == pytest.approx((source - target).abs().mean().item(), rel=1e-6)
    assert lat["after"]["frame"] < lat["before"]["frame"]


def test_exp_fit_moves_only_alpha_e_of_a_full_model(shared_tree):
    from edtalk.train.stages.stage2 import add_expression_branch

    source, target = expression_pairs(shared_tree, count=2, seed=1)
    torch.manual_seed(0)
    lip_pose = init_generator("scratch", None, TINY, 0, "random")[0]
    with pytest.raises(InputError, match="full model"):
        render_ceiling(lip_pose, source, target, "exp", steps=1)
    full = add_expression_branch(lip_pose, exp_dim=10, adain_hidden=8, seed=0, start_as_identity=False)
    state = {k: v.clone() for k, v in full.state_dict().items()}
    fit = render_ceiling(full, source, target, "exp", steps=20)
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in state.items())
    assert fit["after"]["frame"] < fit["before"]["frame"]


def test_script_prints_one_json_line_and_refuses_a_plain_tree(shared_tree, tmp_path, capsys, render_ceiling_script):
    script = render_ceiling_script
    rc = script.main(["--tree", str(shared_tree), "--scratch", "40", "4:8,8:8,16:8,32:8,64:8", "--pairs", "2",
                      "--steps", "3", "--what", "weights"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["model"].startswith("scratch 40") and out["steps"] == 3 and out["after"]["changed"] > 0
    st.generate(tmp_path / "plain", kind="mead", speakers=2, emotions=("neutral", "surprised"), levels=(3,),
                frames=4, mel=False, validate=False)
    rc = script.main(["--tree", str(tmp_path / "plain" / "mead"), "--scratch", "40", "4:8,8:8,16:8,32:8,64:8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "shared-motion" in err[0]
    assert script.main(["--tree", str(shared_tree), "--scratch", "40", "4:x"]) == 2
