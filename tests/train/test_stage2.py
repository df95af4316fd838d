"""Stage 2 (expression decoupling, docs/design.md §8.3): identity start, what learns, bases kept, data, export."""
import numpy as np
import pytest
import torch

from edtalk.config import EDTalkConfig
from edtalk.data import layout
from edtalk.model import EDTalk
from edtalk.train.config import load_train_config
from edtalk.train.stages.stage2 import (Stage2Items, add_expression_branch, decorrelation_loss,
                                        stage2_trainable)
from edtalk.train.trainer import train

CONFIG = "configs/train/stage2_synthtalk_tiny.yaml"
LEARNS = ("exp_fc.", "direction_exp.")


def _lip_pose(seed=0):
    torch.manual_seed(seed)
    return EDTalk(EDTalkConfig.tiny(exp_dim=0)).eval()


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g) * 2 - 1


def _learns(name):
    return name.startswith(LEARNS) or (name.startswith("dec.fineadainresblock.") and ".conv2." in name) or \
        (name.startswith("dec.fineadainresblock.") and ".norm2." in name)


def test_identity_start_renders_like_the_lip_pose_model():
    lip = _lip_pose()
    src, drv = _images(2, 1), _images(2, 2)
    with torch.no_grad():
        want = lip(src, drv)
        full = add_expression_branch(lip, adain_hidden=16).eval()
        got = full(src, drv)
        other = add_expression_branch(lip, adain_hidden=16, start_as_identity=False).eval()(src, drv)
        alpha = full.motion_weights(drv)
        latent, feats = lip.encode(src)
        z, _ = lip.motion_latent(latent, alpha["mouth"], alpha["pose"])
        d_e = full.motion_latent(latent, exp=alpha["exp"])[1]
        # α_e ≡ 0 and EEM ≡ identity: the full decoder on the lip-pose latent is the lip-pose decoder.
        assert torch.equal(alpha["exp"], torch.zeros(2, 10))
        assert torch.equal(full.dec(z, feats, d_e), lip.dec(z, feats))
        np.testing.assert_allclose(full.bases()[:, :26].numpy(), lip.bases().numpy(), atol=1e-6)
    assert full.has_expression and full.direction_exp.weight.shape == (64, 10)
    # End to end only the 26- vs 36-column QR rounding (~1e-7 in z) remains, amplified by random weights.
    torch.testing.assert_close(got, want, rtol=0, atol=1e-3)
    assert (other - want).abs().mean() > 1e-2  # the identity start is what makes them equal


def test_phase_flags():
    full = add_expression_branch(_lip_pose(), adain_hidden=16)
    stage2_trainable(full, "A")
    trained = {n for n, p in full.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in full.named_parameters() if _learns(n)}
    stage2_trainable(full, "B")
    trained_b = {n for n, p in full.named_parameters() if p.requires_grad}
    dead = {n for n, _ in full.named_parameters()
            if n.startswith("dec.fineadainresblock.") and (".conv1." in n or ".norm1." in n)}
    assert trained_b == trained | {n for n, _ in full.named_parameters() if n.startswith("dec.")} - dead
    assert not any(n.startswith(("enc.", "fc.", "lip_fc.", "pose_fc.", "direction_lipnonlip.")) for n in trained_b)


def test_decorrelation_is_the_frobenius_norm_of_the_centred_cross_product():
    g = torch.Generator().manual_seed(0)
    d_e, d_m = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    a, b = (d_e - d_e.mean(0)).numpy(), (d_m - d_m.mean(0)).numpy()
    want = sum(float(a[:, i] @ b[:, j]) ** 2 for i in range(8) for j in range(8)) / 8
    assert float(decorrelation_loss(d_e, d_m)) == pytest.approx(want, rel=1e-5)
    assert float(decorrelation_loss(d_e, d_e[:, :1].expand(5, 8) * 0)) == 0.0


def test_items_take_neutral_sources_of_the_targets_speaker(synth_tree):
    ds = Stage2Items(synth_tree, seed=3, length=40)
    emotions = []
    for i in range(len(ds)):
        plan = ds.plan(i)
        src, tgt = (layout.parse_mead_name(plan[k][0]) for k in ("source", "target"))
        assert src.emotion == "neutral" and src.speaker == tgt.speaker
        emotions.append(tgt.emotion)
    assert set(emotions) == {"neutral", "happy"} and 10 < emotions.count("happy") < 30
    assert ds.plan(7) == Stage2Items(synth_tree, seed=3, length=40).plan(7)
    item = ds[0]
    assert item["source"].shape == (3, 64, 64) and float(item["target"].abs().max()) <= 1.0


@pytest.fixture(scope="module")
def stage2_run(synth_tree, tmp_path_factory):
    """A stage-2 run of 30 tiny steps from a saved lip-pose folder; the initial full model."""
    tmp = tmp_path_factory.mktemp("stage2")
    lip = _lip_pose(seed=4)
    lip.save_pretrained(tmp / "stage1")
    cfg = load_train_config(CONFIG, [f"data.root={synth_tree}", f"model.init_path={tmp / 'stage1'}",
                                      f"run.dir={tmp / 'run'}", "train.max_steps=20", "run.progress=false",
                                      "run.log_every=30", "run.checkpoint_every=0", "run.sample_every=0",
                                      "optim.gen.lr=0.003", "train.batch_size=2", "train.threads=1"])
    start = add_expression_branch(lip, adain_hidden=16, seed=0)
    result = train(cfg)
    return {"result": result, "start": start, "lip": lip, "root": synth_tree, "tmp": tmp}


def test_training_changes_only_the_expression_branch_and_keeps_mouth_pose_bases(stage2_run):
    start = stage2_run["start"]
    trained = EDTalk.from_pretrained(stage2_run["result"].run_dir / "export" / "model")
    before, after = start.state_dict(), trained.state_dict()
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(_learns(k) for k in changed)
    assert {k for k in changed if k.startswith("direction_exp")} and {k for k in changed if ".norm2." in k}
    with torch.no_grad():
        assert torch.equal(start.bases()[:, :26], trained.bases()[:, :26])  # bit for bit


def _recon_l1(model, root, n=12):
    ds = Stage2Items(root, split="train", seed=11, length=n)
    batch = torch.utils.data.default_collate([ds[i] for i in range(n)])
    with torch.no_grad():
        return float((model.eval()(batch["source"], batch["target"]) - batch["target"]).abs().mean())


def test_reconstruction_improves_over_the_lip_pose_start(stage2_run):
    trained = EDTalk.from_pretrained(stage2_run["result"].run_dir / "export" / "model")
    start_l1 = _recon_l1(stage2_run["start"], stage2_run["root"])
    assert _recon_l1(stage2_run["lip"], stage2_run["root"]) == pytest.approx(start_l1, abs=1e-5)
    assert _recon_l1(trained, stage2_run["root"]) < 0.9 * start_l1


def test_export_drives_generate_with_presets_made_from_it(stage2_run, tmp_path):
    from PIL import Image

    from edtalk.cli import main as cli_main
    from edtalk.data.store import open_frames
    from edtalk.video import read_video

    export = stage2_run["result"].run_dir / "export"
    pt = sorted(export.glob("*.pt"))[-1]
    root = tmp_path / "tree"
    root.mkdir()
    for entry in stage2_run["root"].iterdir():  # own motion cache, shared media
        if not entry.name.startswith("EDTalk_"):
            (root / entry.name).symlink_to(entry)
    assert cli_main(["make-presets", "--checkpoint", str(pt), "--data", str(root), "--levels", "all",
                     "--out", str(tmp_path / "presets"), "--quiet", "--device", "cpu"]) == 0
    name = layout.read_split(root, "test")[0]
    Image.fromarray(open_frames(root).frame(name, 0)).save(tmp_path / "face.png")
    lip = layout.clip_path(root, "video", name)
    outs = {}
    for key, exp in (("preset", ["--exp", "happy", "--presets", str(tmp_path / "presets")]),
                     ("npy", ["--exp", str(tmp_path / "presets" / "happy.npy")]), ("none", ["--exp", "none"])):
        outs[key] = tmp_path / f"{key}.mp4"
        assert cli_main(["generate", "--checkpoint", str(pt), "--source", str(tmp_path / "face.png"), "--lip",
                         str(lip), *exp, "--no-crop", "--quiet", "--device", "cpu", "--out", str(outs[key])]) == 0
    frames = {k: read_video(v)[0].astype(np.float32) for k, v in outs.items()}
    assert np.abs(frames["preset"] - frames["npy"]).mean() < 0.5
    assert len(frames["preset"]) == open_frames(root).num_frames(name)


def test_init_path_resolution(tmp_path):
    from edtalk.errors import EDTalkError
    from edtalk.train.stages.stage2 import resolve_stage1_init

    run = tmp_path / "run"
    (run / "export" / "model").mkdir(parents=True)
    (run / "export" / "model" / "config.json").write_text("{}")
    assert resolve_stage1_init("auto", str(run)) == ("pretrained", str(run / "export" / "model"))
    for step in ("000100", "000200"):
        (run / "export" / f"{step}.pt").write_bytes(b"")
    assert resolve_stage1_init("auto", str(run)) == ("official", str(run / "export" / "000200.pt"))
    assert resolve_stage1_init("auto", str(run / "export")) == ("official", str(run / "export" / "000200.pt"))
    assert resolve_stage1_init("auto", str(run / "export" / "model")) == ("pretrained", str(run / "export" / "model"))
    assert resolve_stage1_init("official", "x.pt") == ("official", "x.pt")
    with pytest.raises(EDTalkError, match="no stage-1 model"):
        resolve_stage1_init("auto", str(tmp_path))
