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
