"""Trainer options of the disentanglement work: probes during training and the pair options."""
import json
import warnings
from pathlib import Path

import pytest

from edtalk.errors import EDTalkError
from edtalk.train.config import load_train_config
from edtalk.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
TINY1 = REPO / "configs" / "train" / "stage1_synthtalk_tiny.yaml"
QUIET = ["run.progress=false", "train.threads=1", "data.length=16", "data.num_workers=0"]


def test_probe_every_writes_jsonl_and_tensorboard(synth_tree, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={run}", "train.max_steps=5",
                                         "train.probe_every=2", "probe.split=train", "probe.max_clips=4",
                                         "probe.frames=8", "run.export=false", *QUIET])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny tree is too small for cross-driving triples
        Trainer(cfg).train()
    records = [json.loads(line) for line in (run / "probes.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4, 5]  # untrained, every 2, and the last step
    for r in records:
        assert -10 < r["probe/mouth_open_r2"] <= 1 and "probe/leak_mouth" in r
    assert records[0]["probe/mouth_open_r2"] != records[-1]["probe/mouth_open_r2"]  # the model changed
    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    assert [e.step for e in ea.Scalars("probe/mouth_open_r2")] == [0, 2, 4, 5]


def test_probe_every_needs_a_generator(synth_tree, tmp_path):
    from types import SimpleNamespace

    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "train.probe_every=5"])
    with pytest.raises(EDTalkError, match="trains no generator"):
        Trainer._build_probe(SimpleNamespace(cfg=cfg, models={"syncnet": None}))


def test_pair_options_reach_the_dataset_or_fail_in_one_line(synth_tree, tmp_path):
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "data.cross_clip_rate=0.5", *QUIET])
    assert Trainer(cfg).dataset.cross_clip_rate == 0.5
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "data.max_pose_gap=0.1", *QUIET])
    with pytest.raises(EDTalkError, match=r"max_pose_gap.*do not apply to Stage1Items"):
        Trainer(cfg)
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "data.same_frame_rate=0.5", *QUIET])
    with pytest.raises(EDTalkError, match=r"same_frame_rate.*do not apply to Stage1Items"):
        Trainer(cfg)
    tiny0 = REPO / "configs" / "train" / "stage0_synthtalk_tiny.yaml"
    cfg = load_train_config(str(tiny0), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "data.same_frame_rate=0.5", *QUIET])
    assert Trainer(cfg).dataset.same_frame_rate == 0.5


def test_running_fea_center_exposes_an_offset_and_keeps_its_mean(synth_tree, tmp_path):
    import math

    import torch

    from edtalk.train.stage import get_stage

    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "loss.fea_center=running", "loss.fea_center_momentum=0.5"])
    stage = get_stage("stage1")(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    offset = 100.0 * torch.randn(1, 8)
    own1, own2 = offset + torch.randn(4, 8), offset + torch.randn(4, 8)
    cross = offset + torch.randn(4, 8)
    first = float(stage.consistency(cross, own1, "m"))   # centred on own1's mean (the first batch)
    assert first > 4 / math.e + 1.0                       # the offset no longer hides the disagreement
    stage.consistency(cross, own2, "m")
    expected = 0.5 * own1.mean(0, keepdim=True) + 0.5 * own2.mean(0, keepdim=True)
    assert torch.allclose(stage.center_state["fea_mean_m"], expected)
    saved = stage.state_dict()
    other = get_stage("stage1")(cfg, torch.device("cpu"))
    other.load_state(saved)
    assert float(other.consistency(cross, own2, "m")) == float(stage.consistency(cross, own2, "m"))
    bad = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "loss.fea_center=median"])
    with pytest.raises(EDTalkError, match="fea_center"):
        get_stage("stage1")(bad, torch.device("cpu")).consistency(cross, own1, "m")


def test_fea_center_from_keeps_the_plain_term_until_its_step_and_warms_the_mean(synth_tree, tmp_path):
    import torch

    from edtalk.train.stage import get_stage

    def stage_with(*overrides):
        cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", *overrides])
        return get_stage("stage1")(cfg, torch.device("cpu"))

    torch.manual_seed(0)
    offset = 100.0 * torch.randn(1, 8)
    own, cross = offset + torch.randn(4, 8), offset + torch.randn(4, 8)
    plain = float(stage_with("loss.fea_center=false").consistency(cross, own, "m"))
    late = stage_with("loss.fea_center=running", "loss.fea_center_from=10", "loss.fea_center_momentum=0.5")
    assert float(late.consistency(cross, own, "m", step=9)) == plain         # before its step: the plain term
    assert torch.allclose(late.center_state["fea_mean_m"], own.mean(0, keepdim=True))  # but the mean is kept
    centred = stage_with("loss.fea_center=running", "loss.fea_center_momentum=0.5")
    centred.consistency(cross, own, "m")
    assert float(late.consistency(cross, own, "m", step=10)) == float(centred.consistency(cross, own, "m"))
    assert float(late.consistency(cross, own, "m", step=10)) > plain + 1.0
    with pytest.raises(EDTalkError, match="fea_center_from"):
        stage_with("loss.fea_center=running", "loss.fea_center_from=-1").consistency(cross, own, "m", step=0)


def test_running_center_resume_is_exact_and_image_halves_sum_doubles(synth_tree, tmp_path):
    import torch

    from edtalk.train.trainer import load_checkpoint

    common = [f"data.root={synth_tree}", "loss.fea_center=running", "loss.adv=0", "run.export=false", *QUIET]
    whole = load_train_config(str(TINY1), common + [f"run.dir={tmp_path / 'a'}", "train.max_steps=4"])
    Trainer(whole).train()
    part = load_train_config(str(TINY1), common + [f"run.dir={tmp_path / 'b'}", "train.max_steps=2"])
    Trainer(part).train()
    rest = load_train_config(str(TINY1), common + [f"run.dir={tmp_path / 'b'}", "train.max_steps=4"])
    Trainer(rest).train()
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000004.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000004.pt")
    assert set(a["stage_state"]) == {"fea_mean_m", "fea_mean_p"}
    for k in a["stage_state"]:
        assert torch.equal(a["stage_state"][k], b["stage_state"][k])
    for k, v in a["models"]["gen"].items():
        assert torch.equal(v, b["models"]["gen"][k]), k

    logs = {}
    for mode in ("mean", "sum"):
        cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path / mode}", "loss.adv=0",
                                             f"loss.image_halves={mode}", *QUIET])
        trainer = Trainer(cfg)
        batch = next(trainer._batches())
        logs[mode] = trainer.run_step(batch)
    for k in ("rec_l1", "cross_l1", "rec_mouth"):
        assert float(logs["sum"][k]) == pytest.approx(2 * float(logs["mean"][k]), rel=1e-6)
    assert float(logs["sum"]["fea_m"]) == pytest.approx(float(logs["mean"]["fea_m"]), rel=1e-6)


def test_region_term_weighs_errors_inside_the_boxes(synth_tree, tmp_path):
    import torch

    TINY0 = REPO / "configs" / "train" / "stage0_synthtalk_tiny.yaml"
    cfg = load_train_config(str(TINY0), [f"data.root={synth_tree}", f"run.dir={tmp_path}",
                                         "loss.regions.weight=2.0", "loss.regions.parts=[eyes,mouth]", *QUIET])
    trainer = Trainer(cfg)
    stage, item = trainer.stage, trainer.dataset[0]
    assert item["target_regions"].shape == (2, 4)  # the stage asked its dataset for the boxes
    target = item["target"][None]
    regions = item["target_regions"][None]
    x1, y1, x2, y2 = regions[0, 1].tolist()  # an error of 0.5 inside the mouth box only
    inside = target.clone()
    inside[..., y1:y2, x1:x2] += 0.5
    _, terms = stage.image_terms([("rec", 1.0, inside)], target, regions=regions, region_weight=2.0)
    # mean of the two boxes' L1 (0 for the eyes unless the boxes overlap), times the weight
    ex1, ey1, ex2, ey2 = regions[0, 0].tolist()
    overlap = max(0, min(x2, ex2) - max(x1, ex1)) * max(0, min(y2, ey2) - max(y1, ey1))
    eyes_l1 = 0.5 * overlap / ((ex2 - ex1) * (ey2 - ey1))
    assert abs(float(terms["rec_regions"]) - 2.0 * (0.5 + eyes_l1) / 2) < 1e-5
    # the same error outside every box costs the region term nothing
    outside = target.clone()
    outside[..., :2, :2] += 0.5
    assert all(y1 > 2 or x1 > 2 for x1, y1, _, _ in regions[0].tolist())
    _, terms = stage.image_terms([("rec", 1.0, outside)], target, regions=regions, region_weight=2.0)
    assert float(terms["rec_regions"]) == 0.0 and float(terms["rec_l1"]) > 0
    # a stage whose dataset has no boxes says so in one line
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}/s1",
                                         "loss.regions.weight=1.0", *QUIET])
    with pytest.raises(EDTalkError, match=r"regions.*do not apply to Stage1Items"):
        Trainer(cfg)
