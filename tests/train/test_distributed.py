"""Two CPU processes (torchrun, gloo): gradients are averaged, so ranks stay bit-identical while
seeing different data, and training equals one process on the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from edtalk.train.config import load_train_config
from edtalk.train.stage import get_stage
from edtalk.train.trainer import ExactSampler, load_checkpoint, seed_everything, train

REPO = Path(__file__).resolve().parents[2]
TINY1 = REPO / "configs" / "train" / "stage1_synthtalk_tiny.yaml"


def test_exact_sampler_splits_the_global_batch():
    single = ExactSampler(20, 4, 1, 0, seed=3)
    ranks = [ExactSampler(20, 4, 2, r, seed=3) for r in range(2)]
    assert single.steps_per_epoch == 5
    for step in range(12):  # crosses epochs
        parts = [s.indices(step) for s in ranks]
        assert parts[0] + parts[1] == single.indices(step)
        assert not set(parts[0]) & set(parts[1])
    epoch0 = sorted(i for step in range(5) for i in single.indices(step))
    assert epoch0 == list(range(20))
    assert single.indices(0) != single.indices(5)  # a new permutation each epoch
    # the run's batch sampler: (epoch, index) lists from the start step on, across the epoch end
    from itertools import islice

    from edtalk.train.trainer import StepBatches

    got = list(islice(iter(StepBatches(single, 3)), 3))
    assert got == [[(0, i) for i in single.indices(3)], [(0, i) for i in single.indices(4)],
                   [(1, i) for i in single.indices(5)]]


def test_two_processes_match_one(synth_tree, tmp_path):
    # stddev_group=1 keeps D per-sample, so splitting the batch over ranks changes no forward value.
    common = [f"data.root={synth_tree}", "train.max_steps=3", "train.batch_size=4", "data.length=16",
              "model.stddev_group=1", "run.checkpoint_every=1", "run.progress=false", "train.threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731",
           "-m", "edtalk.cli", "train", "--config", str(TINY1), f"run.dir={tmp_path / 'ddp'}",
           "train.check_sync=true", *common]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(load_train_config(str(TINY1), [f"run.dir={tmp_path / 'single'}", *common]))
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step_00000003.pt")
    one = load_checkpoint(tmp_path / "single" / "checkpoints" / "step_00000003.pt")
    assert ddp["world_size"] == 2 and len(ddp["rng"]) == 2
    seed_everything(0)  # the trainer's step-0 weights
    cfg = load_train_config(str(TINY1), common)
    start = {k: m.state_dict() for k, m in get_stage("stage1")(cfg, torch.device("cpu")).build_models().items()}
    for name in ("gen", "dis"):
        keys = [k for k, v in one["models"][name].items() if v.is_floating_point()]
        step_one = torch.cat([(one["models"][name][k] - start[name][k]).flatten() for k in keys])
        step_ddp = torch.cat([(ddp["models"][name][k] - start[name][k]).flatten() for k in keys])
        # Same updates up to float summation order (Adam turns tiny gradient differences near zero
        # into sign flips of single elements, so compare whole update vectors).
        gap = (step_ddp - step_one).norm() / step_one.norm()
        assert step_one.norm() > 1e-3 and gap < 0.02, (name, gap.item())
