"""Person-specific fine-tuning (docs/design.md §8.7): adapt a generator to one person from one video.

Data: one video of the person — a clip of a layout tree (`data.root=TREE data.clip=NAME`) or a
raw video file (`data.root=VIDEO`, face-cropped with the generation pipeline's face tube, 25 fps;
`data.crop=false` for an already cropped video).  Frames in time order; the first
`data.train_fraction` (80 %) are the training part, the rest the held-out part
(`data.split=test`).  An item is two distinct random frames of the part: {"source", "target"};
an epoch has one item per frame (or `data.length` items, for videos shorter than a batch).

Step: Î = gen(source, target) — every motion factor (mouth, pose, and expression for the full
model) from the target, appearance from the source; loss L1 + pyramid perceptual + GAN (weights
1) and the D step on (target, Î).  `model.train: decoder` (default, the official advice) trains
only `dec`; `full` trains all of G (the EEM branch the released forward discards stays frozen).
Init (`model.init_path`): EDTalk_lip_pose.pt / EDTalk.pt / a run, its export, or a saved folder;
the D comes with an official-format `.pt` that has one.  Exported like every stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from ...config import EDTalkConfig
from ...data import layout
from ...data.datasets import to_tensor
from ...data.store import open_frames, resize_frame
from ...errors import EDTalkError, InputError
from ..stage import register_stage
from .common import GENERATOR_DEFAULTS, GeneratorStage, full_generator_config
from .stage2 import resolve_stage1_init

__all__ = ["FineTune", "PersonFrames", "read_person_frames", "set_finetune_trainable"]

FINETUNE_DEFAULTS = OmegaConf.to_container(OmegaConf.merge(
    OmegaConf.create(GENERATOR_DEFAULTS),
    {
        "model": {
            "init": "auto",      # auto | official | pretrained (auto: from init_path)
            "train": "decoder",  # decoder (default) | full
            "exp_dim": 10,       # used only when a full model is built from scratch
            "adain_hidden": 128,
        },
        "data": {
            "clip": None,            # the clip's name when data.root is a tree (None: its only clip)
            "crop": True,            # face-crop a raw video with the face tube
            "face_backend": "dlib",  # landmarker of the face tube
            "train_fraction": 0.8,
        },
    }))


def read_person_frames(root, size: int, clip: Optional[str] = None, crop: bool = True,
                       backend: str = "dlib") -> np.ndarray:
    """All frames of the person's video, in time order: uint8 [T,size,size,3]."""
    path = Path(root)
    if path.is_dir():
        names = layout.list_clips(path)
        if clip is None:
            if len(names) != 1:
                raise InputError(f"{path} holds {len(names)} clips: name one with data.clip=NAME")
            clip = names[0]
        store = open_frames(path)
        if clip not in names:
            raise InputError(f"clip {clip!r} is not in {path}'s train.json/test.json")
        frames = store.frames(clip, range(store.num_frames(clip)))
        return np.stack([resize_frame(f, size) for f in frames])
    if not path.is_file():
        raise InputError(f"data.root {path}: neither a layout tree nor a video file")
    from ...pipelines.preprocess import open_video

    video = open_video(path, size, crop=crop, backend=backend)
    frames = [resize_frame(c, size) for crops, _ in video.batches() for c in crops]
    if not frames:
        raise InputError(f"{path} has no frames")
    return np.stack(frames)


class PersonFrames(Dataset):
    """Pairs of distinct frames of one part (train: first 80 %, test: last 20 %) of one video."""

    def __init__(self, root, split: str = "train", size: int = 256, seed: int = 0, clip: Optional[str] = None,
                 crop: bool = True, train_fraction: float = 0.8, backend: str = "dlib", frames=None,
                 length: Optional[int] = None):
        if split not in layout.SPLITS:
            raise InputError(f"split must be one of {layout.SPLITS}, got {split!r}")
        if not 0.0 < float(train_fraction) < 1.0:
            raise InputError(f"data.train_fraction must be in (0, 1), got {train_fraction}")
        frames = read_person_frames(root, size, clip, crop, backend) if frames is None else frames
        cut = int(len(frames) * float(train_fraction))
        self.frames = frames[:cut] if split == "train" else frames[cut:]
        if len(self.frames) < 2:
            raise InputError(f"the {split} part of the video has {len(self.frames)} frame(s); need at least 2")
        self.seed, self.epoch = int(seed), 0
        self.length = int(length) if length else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length or len(self.frames)

    def plan(self, index: int) -> dict:
        """{"source": frame, "target": frame}: two distinct frames, from default_rng([seed, epoch, index])."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        source, target = rng.choice(len(self.frames), size=2, replace=False)
        return {"source": int(source), "target": int(target)}

    def __getitem__(self, index: int) -> dict:
        return {key: to_tensor(self.frames[k]) for key, k in self.plan(index).items()}


def set_finetune_trainable(gen, mode: str = "decoder") -> None:
    """requires_grad for `model.train`: decoder (dec only) or full (all of G)."""
    if mode not in ("decoder", "full"):
        raise EDTalkError(f"model.train must be decoder or full, got {mode!r}")
    gen.requires_grad_(mode == "full")
    gen.dec.requires_grad_(True)
    for p in gen.dead_parameters():
        p.requires_grad_(False)


@register_stage("finetune")
class FineTune(GeneratorStage):
    default_config = FINETUNE_DEFAULTS

    def generator_config(self) -> EDTalkConfig:
        return full_generator_config(self.cfg.model)

    def build_models(self):
        m = self.cfg.model
        if str(m.init) != "scratch":
            m.init, m.init_path = resolve_stage1_init(str(m.init), m.init_path)
        models = super().build_models()
        set_finetune_trainable(models["gen"], str(m.train))
        return models

    def build_dataset(self):
        d = self.cfg.data
        size = int(d.size) if d.size else int(self.models["gen"].config.size)
        return PersonFrames(str(d.root), str(d.split), size, int(self.cfg.seed), d.clip, bool(d.crop),
                            float(d.train_fraction), str(d.face_backend), length=d.length)

    def train_step(self, batch, ctx):
        return self.reconstruction_step(batch, ctx)  # mouth, pose (and expression) from the target

    def sample_images(self, batch, ctx):
        gen = ctx.ema_model("gen")
        return {"source": batch["source"], "target": batch["target"], "output": gen(batch["source"], batch["target"])}


def heldout_l1(model, dataset: PersonFrames, pairs: int = 16) -> float:
    """Mean L1 of model(source, target) vs target over the first `pairs` items of a part."""
    items = [dataset[i % len(dataset)] for i in range(pairs)]
    batch = torch.utils.data.default_collate(items)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(batch["source"].to(model.device, model.dtype), batch["target"].to(model.device, model.dtype))
        value = float((out.float() - batch["target"].to(out.device)).abs().mean())
    model.train(was)
    return value
