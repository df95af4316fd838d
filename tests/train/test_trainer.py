"""The trainer on a small SynthTalk tree: tiny stages learn, resume is bit-exact, exports load,
configs fail with one line."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edtalk import EDTalk
from edtalk.cli import main as cli_main
from edtalk.errors import EDTalkError
from edtalk.train.config import load_train_config
from edtalk.train.trainer import list_checkpoints, load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]
TINY1 = REPO / "configs" / "train" / "stage1_synthtalk_tiny.yaml"
TINY0 = REPO / "configs" / "train" / "stage0_synthtalk_tiny.yaml"
QUIET = ["run.progress=false", "train.threads=1", "data.length=16"]


def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(Path(run_dir) / "tb"))
    ea.Reload()
    return [e.value for e in ea.Scalars(tag)]


@pytest.fixture(scope="module")
def stage1_run(synth_tree, tmp_path_factory):
    """24 steps of the tiny stage-1 config (GAN and generator EMA on), a checkpoint every 12."""
    run_dir = tmp_path_factory.mktemp("s1") / "run"
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={run_dir}", "train.max_steps=24",
                                         "run.checkpoint_every=12", "run.log_every=6", "run.sample_every=12", "train.ema=0.9",
                                         *QUIET])
    result = train(cfg)
    return run_dir, result


def test_tiny_stage1_learns(stage1_run):
    run_dir, result = stage1_run
    assert result.step == 24
    for tag in ("loss/rec_l1", "loss/cross_l1", "loss/cross_mouth"):
        values = scalars(run_dir, tag)
        assert len(values) == 4 and values[-1] < 0.8 * values[0], (tag, values)
    for tag in ("loss/adv", "loss/d", "loss/fea_m", "loss/fea_p", "time/data_wait_frac"):
        assert len(scalars(run_dir, tag)) == 4, tag
    assert (run_dir / "config.yaml").is_file() and (run_dir / "samples" / "step_00000024.png").is_file()
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_00000012.pt", "step_00000024.pt"]


def test_resume_after_kill_is_bit_identical(stage1_run, tmp_path):
    run_dir, _ = stage1_run
    # What a run killed after its step-12 checkpoint leaves behind (plus a half-written file).
    resumed = tmp_path / "run"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "step_00000012.pt", resumed / "checkpoints")
    (resumed / "checkpoints" / "step_00000013.pt.tmp").write_bytes(b"partial")
    cfg = load_train_config(str(run_dir / "config.yaml"), [f"run.dir={resumed}"])
    train(cfg)
    a = load_checkpoint(run_dir / "checkpoints" / "step_00000024.pt")
    b = load_checkpoint(resumed / "checkpoints" / "step_00000024.pt")
    for group in ("models", "ema", "optimizers", "schedulers"):
        for name in a[group]:
            _assert_same(a[group][name], b[group][name], f"{group}.{name}")


def _assert_same(x, y, where):
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_same(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


def test_official_export_renders_like_the_trained_model(stage1_run, synth_tree):
    run_dir, result = stage1_run
    export = run_dir / "export"
    assert sorted(p.name for p in export.iterdir()) == ["000024.pt", "model"]
    official = EDTalk.from_official(export / "000024.pt")
    ours = EDTalk.from_pretrained(export / "model")
    raw = torch.load(export / "000024.pt", map_location="cpu", weights_only=False)
    assert set(raw) == {"gen", "dis", "g_optim", "d_optim", "args"}
    assert type(raw["args"]).__name__ == "Namespace" and raw["args"].stage == "stage1"
    assert raw["dis"] and "final_linear.0.weight" in raw["dis"]
    state = load_checkpoint(run_dir / "checkpoints" / "step_00000024.pt")
    ema, live = state["ema"]["gen"], state["models"]["gen"]
    assert all(torch.equal(official.state_dict()[k], v) for k, v in ema.items())  # exports use the EMA
    assert not torch.equal(ema["lip_fc.2.weight"], live["lip_fc.2.weight"])
    torch.manual_seed(0)
    src, drv = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(official(src, drv), ours(src, drv))


def test_tiny_stage0_learns(synth_tree, tmp_path):
    cfg = load_train_config(str(TINY0), [f"data.root={synth_tree}", f"run.dir={tmp_path / 'run'}",
                                         "train.max_steps=24", "run.log_every=6", *QUIET])
    train(cfg)
    values = scalars(tmp_path / "run", "loss/rec_l1")
    assert len(values) == 4 and values[-1] < 0.8 * values[0], values
    assert len(scalars(tmp_path / "run", "loss/d")) == 4


def test_config_mistakes_are_one_line(tmp_path, capsys):
    args = ["train", "--config", str(TINY1), f"data.root={tmp_path}", f"run.dir={tmp_path / 'run'}"]
    assert cli_main(args + ["train.max_step=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edtalk: error: bad training config") and "max_step" in err[0]
    assert cli_main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert cli_main(args + ["train.amp=fp8"]) == 2
    assert "train.amp" in capsys.readouterr().err
    assert cli_main(args + ["loss.perceptual.backbone=vgg16"]) == 2  # bad backbone: before any output
    assert "unknown perceptual backbone" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(EDTalkError, match="data.root"):
        load_train_config(None, ["stage=stage1"])
    with pytest.raises(EDTalkError, match="unknown stage"):
        load_train_config(None, ["stage=stage9"])


def test_print_config_resolves_overrides(capsys):
    assert cli_main(["train", "--config", str(TINY1), "data.root=/x", "train.batch_size=6", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 6" in out and "root: /x" in out and "fea_reduction: sum" in out


def test_lr_schedules_and_the_trainer_uses_them(synth_tree, tmp_path):
    import math

    from omegaconf import OmegaConf

    from edtalk.train.trainer import lr_factor_fn

    f = lr_factor_fn(OmegaConf.create({"warmup_steps": 10, "max_steps": 110, "lr_schedule": "cosine"}))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0) and f(500) == pytest.approx(0.0)
    floor = lr_factor_fn(OmegaConf.create({"warmup_steps": 0, "max_steps": 100, "lr_schedule": "cosine",
                                           "lr_min_ratio": 0.1}))
    assert floor(100) == pytest.approx(0.1) and floor(50) == pytest.approx(0.55)
    assert lr_factor_fn(OmegaConf.create({"warmup_steps": 0, "max_steps": 9}))(5) == 1.0
    with pytest.raises(EDTalkError, match="lr_schedule"):
        lr_factor_fn(OmegaConf.create({"warmup_steps": 0, "max_steps": 9, "lr_schedule": "step"}))
    run_dir = tmp_path / "run"
    cfg = load_train_config(str(TINY0), [f"data.root={synth_tree}", f"run.dir={run_dir}", "train.max_steps=4",
                                         "train.lr_schedule=cosine", "run.checkpoint_every=3", "optim.gen.lr=0.001",
                                         "loss.adv=0", *QUIET])
    train(cfg)
    state = load_checkpoint(list_checkpoints(run_dir)[0])  # step 3: three scheduler steps taken
    lr = state["optimizers"]["gen"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


def test_max_minutes_stops_with_checkpoint_and_export_then_resumes_exactly(synth_tree, tmp_path):
    common = [f"data.root={synth_tree}", "train.max_steps=4", "loss.adv=0", "run.checkpoint_every=0", *QUIET]
    budgeted = tmp_path / "budgeted"
    cfg = load_train_config(str(TINY0), [f"run.dir={budgeted}", "train.max_minutes=1e-9", *common])
    result = train(cfg)  # the budget is spent after the first step
    assert result.step == 1 and result.exports
    assert [p.name for p in list_checkpoints(budgeted)] == ["step_00000001.pt"]
    assert (budgeted / "samples" / "step_00000001.png").is_file()
    assert train(load_train_config(str(TINY0), [f"run.dir={budgeted}", *common])).step == 4
    straight = tmp_path / "straight"
    train(load_train_config(str(TINY0), [f"run.dir={straight}", *common]))
    a = load_checkpoint(straight / "checkpoints" / "step_00000004.pt")
    b = load_checkpoint(budgeted / "checkpoints" / "step_00000004.pt")
    for name in a["models"]:
        _assert_same(a["models"][name], b["models"][name], name)
    with pytest.raises(EDTalkError, match="max_minutes"):
        load_train_config(str(TINY0), [f"data.root={synth_tree}", "train.max_minutes=-1"])
