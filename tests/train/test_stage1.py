"""Stage 1's optional terms (not in the spec): the repair output is G(a_b driven by a), and adding
it leaves the self and cross outputs as they were."""
from pathlib import Path

import pytest
import torch

from edtalk.data.datasets import Stage1Items
from edtalk.train.config import load_train_config
from edtalk.train.stage import get_stage

TINY1 = Path(__file__).resolve().parents[2] / "configs" / "train" / "stage1_synthtalk_tiny.yaml"


def test_repair_output_is_the_swapped_frame_driven_by_the_target(synth_tree, tmp_path):
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "loss.repair=1"])
    stage = get_stage("stage1")(cfg, torch.device("cpu"))
    gen = stage.build_models()["gen"].eval()
    items = Stage1Items(str(synth_tree), seed=2)
    batch = torch.utils.data.default_collate([items[i] for i in range(3)])
    with torch.no_grad():
        plain = stage.forward(gen, batch)
        with_repair = stage.forward(gen, batch, repair=True)
        expected = gen(torch.cat([batch["a_b"], batch["b_a"]]), torch.cat([batch["a"], batch["b"]]))
    for key in ("self", "cross"):
        assert torch.allclose(with_repair[key], plain[key], atol=1e-5)
    assert torch.allclose(with_repair["repair"], expected, atol=1e-5)
    assert not torch.allclose(with_repair["repair"], with_repair["self"], atol=1e-3)


def test_centred_fea_sees_past_a_shared_offset(synth_tree, tmp_path):
    import math

    cfgs = {c: load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                              f"loss.fea_center={c}"]) for c in ("false", "true")}
    stages = {c: get_stage("stage1")(cfg, torch.device("cpu")) for c, cfg in cfgs.items()}
    torch.manual_seed(0)
    offset = 100.0 * torch.randn(1, 8)
    own = offset + torch.randn(4, 8)           # [a-half; b-half] self latents
    cross = offset + torch.randn(4, 8)         # crosses that disagree with them
    plain = float(stages["false"].consistency(cross, own))
    centred = float(stages["true"].consistency(cross, own))
    assert plain == pytest.approx(4 / math.e, rel=1e-3)   # the offset hides the disagreement
    assert centred > 4 / math.e + 1.0                      # centring exposes it
    assert float(stages["true"].consistency(own, own)) == pytest.approx(4 / math.e, rel=1e-5)
