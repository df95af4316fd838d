"""Stage 1's optional terms (not in the spec): the repair output is G(a_b driven by a), and adding
it leaves the self and cross outputs as they were."""
from pathlib import Path

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
