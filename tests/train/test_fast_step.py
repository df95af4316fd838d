"""The training step's fast paths give the numbers of the plain ones: batched image losses, the
device QR's LAPACK signs, device-side log sums, foreach EMA, fused Adam, one DataLoader for the
run, cached constants, and train.compile."""
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.errors import EDTalkError
from edtalk.networks.motion import device_qr, householder_signs, orthonormal_bases
from edtalk.nn import ops
from edtalk.train.config import load_train_config
from edtalk.train.losses import PyramidPerceptualLoss, box_l1_loss, box_mask, l1_loss
from edtalk.train.trainer import (EpochItem, ExactSampler, LogAccumulator, StepBatches, Trainer,
                                  adam_implementation, loader_workers, train)

REPO = Path(__file__).resolve().parents[2]
TINY1 = REPO / "configs" / "train" / "stage1_synthtalk_tiny.yaml"
QUIET = ["run.progress=false", "train.threads=1", "data.length=16"]


# ----------------------------------------------------------------------------- QR on the device


@pytest.mark.parametrize("shape", [(512, 26), (512, 36), (64, 26), (30, 30), (8, 3)])
def test_householder_signs_are_lapacks(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for _ in range(5):
        w = torch.randn(*shape, generator=g) + 1e-8
        r = torch.linalg.qr(w)[1]
        assert torch.equal(householder_signs(w).float(), torch.sign(torch.diagonal(r)))


def test_device_qr_maps_any_solver_signs_onto_lapacks(monkeypatch):
    """A device solver that returns other column signs (a valid QR too) still gives LAPACK's Q."""
    w = torch.randn(64, 26, generator=torch.Generator().manual_seed(3)) + 1e-8
    lapack = torch.linalg.qr(w)[0]
    flip = torch.tensor([(-1.0) ** (i // 3) for i in range(26)])
    real_qr = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a, mode="reduced": (lambda q, r: (q * flip, r * flip[:, None]))(*real_qr(a, mode=mode)))
    assert not torch.allclose(torch.linalg.qr(w)[0], lapack, atol=1e-3)  # the stand-in solver differs
    assert torch.allclose(device_qr(w), lapack, atol=1e-5)


def test_device_qr_passes_gradients_like_lapack():
    w = (torch.randn(32, 6, generator=torch.Generator().manual_seed(1)) + 1e-8).requires_grad_(True)
    probe = torch.randn(32, 6, generator=torch.Generator().manual_seed(2))
    (orthonormal_bases(w) * probe).sum().backward()
    g_lapack, w.grad = w.grad.clone(), None
    (device_qr(w.float() + 1e-8) * probe).sum().backward()
    assert torch.allclose(w.grad, g_lapack, atol=1e-5)


# ----------------------------------------------------------------------------- batched image losses


class _TinyBackbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


def test_image_terms_equal_the_per_part_losses(synth_tree, tmp_path):
    """One pass over [self; cross; repair] = each part's L1 + perceptual + lip-box L1 on its own,
    weighted — values and gradients."""
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "loss.l1=0.7",
                                         "loss.perceptual.backbone=none", *QUIET])
    trainer = Trainer(cfg)
    stage = trainer.stage
    stage.perceptual = PyramidPerceptualLoss(_TinyBackbone(), layer_weight=3.0)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    outs = [(torch.rand(4, 3, 32, 32, generator=g) * 2 - 1).requires_grad_(True) for _ in range(3)]
    boxes = torch.tensor([[4, 20, 16, 28], [2, 18, 14, 26], [0, 0, 0, 0], [10, 10, 30, 30]])
    weights = {"rec": 1.0, "cross": 0.5, "repair": 2.0}
    parts = [(p, weights[p], o) for p, o in zip(weights, outs)]
    total, terms = stage.image_terms(parts, target, boxes, mouth=4.0)
    grads = torch.autograd.grad(total, outs)

    expected, ref_total = {}, 0
    for prefix, w, o in parts:
        expected[f"{prefix}_l1"] = w * 0.7 * l1_loss(o, target)
        expected[f"{prefix}_perc"] = w * stage.perceptual(o, target)
        expected[f"{prefix}_mouth"] = w * 4.0 * box_l1_loss(o, target, boxes)
        ref_total = ref_total + expected[f"{prefix}_l1"] + expected[f"{prefix}_perc"] + expected[f"{prefix}_mouth"]
    ref_grads = torch.autograd.grad(ref_total, outs)
    assert set(terms) == set(expected)
    for k in expected:
        assert float(terms[k].detach()) == pytest.approx(float(expected[k].detach()), rel=1e-5), k
    assert float(total.detach()) == pytest.approx(float(ref_total.detach()), rel=1e-5)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-9)
    assert float(terms["repair_mouth"].detach()) > 0 and box_mask(boxes, 32)[2].sum() == 0  # an empty box counts 0


# ----------------------------------------------------------------------------- trainer pieces


def test_log_accumulator_means_per_key_on_the_device_values():
    acc = LogAccumulator()
    acc.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0, dtype=torch.float64), "n": 3})
    acc.add({"a": torch.tensor(3.0), "b": torch.tensor(2.0, dtype=torch.float64), "n": 5})
    acc.add({"a": torch.tensor(5.0), "b": torch.tensor(0.0, dtype=torch.float64), "r1": torch.tensor(7.0)})
    means = acc.means()
    assert means == pytest.approx({"a": 3.0, "b": 2.0, "n": 4.0, "r1": 7.0})  # r1: over the one step that logged it
    assert acc.means() == {}  # read resets


def test_adam_implementation_choice_and_errors():
    assert adam_implementation("auto", torch.device("cpu")) == {"fused": True}
    assert adam_implementation("loop", torch.device("cpu")) == {"foreach": False}
    with pytest.raises(EDTalkError, match="optimizer_impl"):
        adam_implementation("fast", torch.device("cpu"))
    assert loader_workers("auto") >= 1 and loader_workers(0) == 0
    with pytest.raises(EDTalkError, match="num_workers"):
        loader_workers(-2)


def test_step_batches_cross_epochs_like_the_exact_sampler():
    sampler = ExactSampler(num_items=10, global_batch=4, world_size=1, rank=0, seed=5)  # 2 steps per epoch
    it = iter(StepBatches(sampler, start=1))
    got = [next(it) for _ in range(4)]
    assert got == [[(sampler.epoch_of(s), i) for i in sampler.indices(s)] for s in range(1, 5)]
    assert [b[0][0] for b in got] == [0, 1, 1, 2]

    class Epochs:
        def __init__(self):
            self.epoch = None

        def set_epoch(self, e):
            self.epoch = e

        def __len__(self):
            return 10

        def __getitem__(self, i):
            return (self.epoch, i)

    assert EpochItem(Epochs())[(3, 7)] == (3, 7)


@pytest.fixture(scope="module")
def loader_runs(synth_tree, tmp_path_factory):
    """The tiny stage-1 config for 6 steps (EMA on) with the loader in-process and in a worker."""
    out = {}
    for workers in (0, 1):
        run = tmp_path_factory.mktemp(f"w{workers}") / "run"
        cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={run}", "train.max_steps=6",
                                             "run.log_every=3", "train.ema=0.5", "run.export=false",
                                             f"data.num_workers={workers}", *QUIET])
        trainer = Trainer(cfg)
        result = trainer.train()
        out[workers] = (trainer, result)
    return out


def test_loader_workers_change_nothing_but_speed(loader_runs):
    (t0, r0), (t1, r1) = loader_runs[0], loader_runs[1]
    assert r0.step == r1.step == 6
    for name in t0.models:
        for (k, a), b in zip(t0.models[name].state_dict().items(), t1.models[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    assert r0.last_logs["g_total"] == r1.last_logs["g_total"]


def test_trainer_uses_fused_adam_and_foreach_ema(loader_runs):
    trainer, _ = loader_runs[0]
    assert trainer.optimizers["gen"].defaults["fused"] is True
    # EMA after 6 steps at decay 0.5 differs from the live weights but is a blend of the run's weights
    ema, live = trainer.ema["gen"], trainer.models["gen"]
    diffs = [float((e - p).detach().abs().max()) for e, p in zip(ema.parameters(), live.parameters()) if p.requires_grad]
    assert max(diffs) > 0
    # one more EMA update by hand equals the trainer's foreach one
    expected = [e.detach().clone().lerp_(p.detach(), 0.5) for e, p in zip(ema.parameters(), live.parameters())]
    trainer.update_ema("gen")
    assert all(torch.equal(e, x) for e, x in zip(ema.parameters(), expected))


# ----------------------------------------------------------------------------- cached constants


def test_cached_constants_survive_inference_mode_then_training():
    """Constants first made under inference_mode must not reach autograd (they cannot)."""
    from edtalk.networks.synthesis import identity_grid
    from edtalk.nn.layers import Blur, EqualConv2d

    conv, blur = EqualConv2d(3, 4, 3, padding=1), Blur((2, 1))
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        ref = blur(conv(x)) * ops.scalar(0.25, x)
        grid_inf = identity_grid(8, 8, x)
    y = blur(conv(x)) * ops.scalar(0.25, x)
    y.sum().backward()  # fails if an inference-mode constant was reused
    assert torch.allclose(y.detach(), ref) and conv.weight.grad is not None
    grid = identity_grid(8, 8, x)
    assert torch.equal(grid, grid_inf) and not grid.is_inference()
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0] and grid[0, -1, -1].tolist() == [1.0, 1.0]
    assert ops.scalar(0.25, x).dtype == x.dtype and ops.scalar(0.25, x.double()).dtype == torch.float64


# ----------------------------------------------------------------------------- compile


def test_cuda_graphs_without_cuda_is_one_line(synth_tree, tmp_path):
    cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path}", "train.device=cpu",
                                         "train.cuda_graphs=true", *QUIET])
    with pytest.raises(EDTalkError, match="cuda_graphs needs a CUDA device"):
        Trainer(cfg)


def test_compiled_step_matches_eager(synth_tree, tmp_path, monkeypatch):
    """train.compile compiles the stage's targets in place: same parameter names, the same losses.
    (Only the shared motion MLP here: compiling the whole tiny generator takes minutes on a CPU.)"""
    from edtalk.train.stages.stage1 import Stage1

    compiled_modules = []

    def targets(self):
        compiled_modules.append(self.models["gen"].fc)
        return [self.models["gen"].fc]

    monkeypatch.setattr(Stage1, "compile_targets", targets)
    logs = {}
    for compiled in (False, True):
        cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path / str(compiled)}",
                                             "train.max_steps=2", "run.log_every=1", "run.export=false",
                                             "loss.adv=0", "data.num_workers=0", f"train.compile={compiled}", *QUIET])
        trainer = Trainer(cfg)
        names = [k for k, _ in trainer.models["gen"].named_parameters()]
        logs[compiled] = (trainer.train().last_logs, names)
    (eager, n0), (comp, n1) = logs[False], logs[True]
    assert n0 == n1
    assert len(compiled_modules) == 1 and compiled_modules[0]._compiled_call_impl is not None
    assert comp["g_total"] == pytest.approx(eager["g_total"], rel=1e-4)


def test_channels_last_trains_the_same_numbers(synth_tree, tmp_path):
    """NHWC weights and images (the CPU default) train like NCHW: same losses and weights to
    float rounding, and the export is an ordinary (contiguous) model."""
    from edtalk import EDTalk

    out = {}
    for flag in ("true", "false"):
        cfg = load_train_config(str(TINY1), [f"data.root={synth_tree}", f"run.dir={tmp_path / flag}", "train.max_steps=3",
                                             "run.log_every=1", f"train.channels_last={flag}", *QUIET])
        trainer = Trainer(cfg)
        convs = [p for p in trainer.models["gen"].parameters() if p.dim() == 4 and p.shape[-1] > 1 and p.shape[1] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == (flag == "true") for p in convs)
        out[flag] = (trainer.train(), trainer.models["gen"].state_dict())
    (r1, w1), (r0, w0) = out["true"], out["false"]
    assert r1.last_logs["g_total"] == pytest.approx(r0.last_logs["g_total"], rel=1e-4)
    for k in w0:  # Adam moves a weight by ~lr whatever its gradient's size: rounding can flip a near-zero one
        diff = (w1[k].float() - w0[k].float())
        assert diff.abs().max() <= 2 * 3 * 1e-3 and diff.norm() <= 1e-3 * (w0[k].float().norm() + 1), k
    model = EDTalk.from_pretrained(r1.exports[0])
    assert all(t.is_contiguous() for t in model.state_dict().values())
