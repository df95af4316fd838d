"""Person-specific fine-tuning (docs/design.md §8.7): data split, what learns, held-out reconstruction."""
import numpy as np
import pytest
import torch

from edtalk.config import EDTalkConfig
from edtalk.data import layout
from edtalk.data.store import open_frames
from edtalk.model import EDTalk
from edtalk.train.config import load_train_config
from edtalk.train.stages.finetune import PersonFrames, heldout_l1
from edtalk.train.trainer import train
from edtalk.video import write_video

CONFIG = "configs/train/finetune_synthtalk_tiny.yaml"


def _clip(root):
    names = layout.read_split(root, "train")
    store = open_frames(root)
    return max(names, key=store.num_frames)


def test_frames_split_in_time_order_and_items_are_distinct_frames(synth_tree, tmp_path):
    name = _clip(synth_tree)
    frames = open_frames(synth_tree).frames(name, range(open_frames(synth_tree).num_frames(name)))
    train_part = PersonFrames(synth_tree, "train", 64, seed=1, clip=name)
    test_part = PersonFrames(synth_tree, "test", 64, seed=1, clip=name)
    cut = int(len(frames) * 0.8)
    np.testing.assert_array_equal(train_part.frames, frames[:cut])
    np.testing.assert_array_equal(test_part.frames, frames[cut:])
    plans = [train_part.plan(i) for i in range(len(train_part))]
    assert all(p["source"] != p["target"] for p in plans)
    assert len({(p["source"], p["target"]) for p in plans}) > 1
    train_part.set_epoch(1)
    assert [train_part.plan(i) for i in range(len(train_part))] != plans
    # A raw (already cropped) video file gives the same frames as the tree's clip, up to the codec.
    video = tmp_path / "person.mp4"
    write_video(video, frames, fps=25)
    from_video = PersonFrames(video, "train", 64, crop=False)
    assert from_video.frames.shape == train_part.frames.shape
    assert np.abs(from_video.frames.astype(float) - train_part.frames).mean() < 6


@pytest.fixture(scope="module")
def finetuned(synth_tree, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(5)
    start = EDTalk(EDTalkConfig.tiny(exp_dim=0))
    start.save_pretrained(tmp / "start")
    name = _clip(synth_tree)
    cfg = load_train_config(CONFIG, [f"data.root={synth_tree}", f"data.clip={name}", f"model.init_path={tmp / 'start'}",
                                     f"run.dir={tmp / 'run'}", "train.max_steps=30", "train.batch_size=2", "run.progress=false",
                                     "run.checkpoint_every=0", "run.sample_every=0", "optim.gen.lr=0.003",
                                     # 30 tiny steps measure the reconstruction terms: a random D's GAN
                                     # term dominates the first steps (held-out L1 0.34 -> 0.37 with it).
                                     "loss.adv=0"])
    result = train(cfg)
    return {"start": start, "model": EDTalk.from_pretrained(result.run_dir / "export" / "model"), "clip": name}


def test_only_the_decoder_learns_by_default(finetuned):
    before, after = finetuned["start"].state_dict(), finetuned["model"].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("dec.convs.") for k in changed)
    assert all(k.startswith("dec.") for k in changed)


def test_heldout_reconstruction_improves(finetuned, synth_tree):
    held_out = PersonFrames(synth_tree, "test", 64, seed=2, clip=finetuned["clip"])
    before, after = heldout_l1(finetuned["start"], held_out), heldout_l1(finetuned["model"], held_out)
    assert after < 0.8 * before, (before, after)


def test_full_option_trains_all_of_g_but_the_dead_eem_branch():
    from edtalk.train.stages.finetune import set_finetune_trainable

    gen = EDTalk(EDTalkConfig.tiny())
    set_finetune_trainable(gen, "decoder")
    assert {n for n, p in gen.named_parameters() if p.requires_grad} == \
        {n for n, _ in gen.named_parameters() if n.startswith("dec.") and not _dead(n)}
    set_finetune_trainable(gen, "full")
    assert {n for n, p in gen.named_parameters() if not p.requires_grad} == {n for n, _ in gen.named_parameters()
                                                                             if _dead(n)}


def _dead(name):
    return name.startswith("dec.fineadainresblock.") and (".conv1." in name or ".norm1." in name)
