"""Torch datasets for training stages 0 and 1 over trees in the :mod:`edtalk.data.layout` format.

Items (images: float32 tensors [3,S,S] in [-1,1], RGB; S = `size`, or the tree's frame size)::

    Stage0Pairs  (spec §8.1)  {"source": ..., "target": ...}
        MEAD: target = a random frame of clip i; source = a random frame of a random *neutral*
              clip of the same speaker (any clip of the speaker if it has no neutral clip).
        HDTF: source and target = two random frames (with replacement) of clip i.

    Stage1Items  (spec §8.2, §7.4)  {"a_id", "a", "b_id", "b", "a_b", "b_a"}
        a_id, a   two random frames of clip i (identity frame, target frame);
        b_id, b   two random frames of a random clip of a random group (speaker for MEAD, video
                  for HDTF; it may be clip i's own group);
        a_b       a with b's mouth  (mouth_swap(a, lm_a, b, lm_b));
        b_a       b with a's mouth.

Both datasets:

- ``len(ds)`` = number of clips in the split (or `length`; then clip i is drawn at random);
- ``ds.set_epoch(epoch)``: all randomness of item i comes from
  ``numpy.random.default_rng([seed, epoch, i])`` — no global RNG, so an item is a pure function
  of (seed, epoch, i) and resuming is exact in any worker layout;
- ``ds.plan(i)`` returns the (clip name, frame index) choices of item i without loading pixels;
- frames come from `store` (default :func:`edtalk.data.store.open_frames`: the tree's
  frames.lmdb if present, else MP4 decoding); frames of another size are PIL-bicubic resized to
  `size` and landmarks scaled with them (pixel-centre aligned);
- only clips of `split` are ever read.

Use with ``torch.utils.data.DataLoader(ds, batch_size, shuffle=True, num_workers=k)``; call
``ds.set_epoch(e)`` before each epoch (DataLoader workers see it with persistent_workers=False).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from edtalk.data import layout
from edtalk.data.mouth_swap import mouth_swap
from edtalk.data.store import open_frames, resize_frame
from edtalk.errors import InputError

__all__ = ["Stage0Pairs", "Stage1Items", "to_tensor", "scale_landmarks"]


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] → float32 [3,H,W] in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def scale_landmarks(landmarks: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Landmarks of a from_size² frame → the same frame resized to to_size² (pixel centres aligned)."""
    if from_size == to_size:
        return np.asarray(landmarks, dtype=np.float64)
    k = to_size / from_size
    return (np.asarray(landmarks, dtype=np.float64) + 0.5) * k - 0.5


class _TreeDataset(Dataset):
    """Clips of one split of one tree, grouped by speaker (MEAD) or video (HDTF)."""

    def __init__(self, root: os.PathLike, split: str = "train", size: Optional[int] = None, seed: int = 0,
                 store=None, length: Optional[int] = None):
        self.root = Path(root)
        if split not in layout.SPLITS:
            raise InputError(f"split must be one of {layout.SPLITS}, got {split!r}")
        self.split = split
        self.names = layout.read_split(self.root, split)
        if not self.names:
            raise InputError(f"{self.root}/{split}.json lists no clips")
        kinds = {layout.name_kind(n) for n in self.names}
        if len(kinds) != 1:
            raise InputError(f"{self.root}/{split}.json mixes MEAD and HDTF names")
        self.kind = kinds.pop()
        self.groups: dict = {}
        for k, name in enumerate(self.names):
            self.groups.setdefault(layout.group_of(name, self.kind), []).append(k)
        self.group_names = sorted(self.groups)
        self.group_of_clip = [layout.group_of(n, self.kind) for n in self.names]
        self.seed = int(seed)
        self.epoch = 0
        self.length = None if length is None else int(length)
        if self.length is not None and self.length < 1:
            raise InputError(f"length must be positive, got {length}")
        self.store = store if store is not None else open_frames(self.root)
        self.native_size = self._native_size()
        self.size = int(size) if size is not None else self.native_size

    def _native_size(self) -> int:
        from edtalk.video import probe_video

        info = probe_video(layout.clip_path(self.root, "video", self.names[0]))
        return int(info["width"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.names)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _clip_index(self, index: int, rng: np.random.Generator) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return index if self.length is None else int(rng.integers(len(self.names)))

    def _random_frame(self, name: str, rng: np.random.Generator) -> int:
        return int(rng.integers(self.store.num_frames(name)))

    def _image(self, name: str, index: int) -> np.ndarray:
        return resize_frame(self.store.frame(name, index), self.size)

    def _landmarks(self, name: str, index: int) -> np.ndarray:
        lm = np.load(layout.clip_path(self.root, "landmark", name), mmap_mode="r")[index]
        return scale_landmarks(lm, self.native_size, self.size)


class Stage0Pairs(_TreeDataset):
    """Stage-0 (LIA fine-tune) pairs {"source", "target"}; see the module docstring."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None):
        super().__init__(root, split, size, seed, store, length)
        self.neutral: dict = {}
        if self.kind == "mead":
            for group, clips in self.groups.items():
                neutral = [k for k in clips if layout.parse_mead_name(self.names[k]).emotion == "neutral"]
                self.neutral[group] = neutral or clips

    def plan(self, index: int) -> dict:
        """{"source": (name, frame), "target": (name, frame)} of item `index`."""
        rng = self._rng(index)
        target = self.names[self._clip_index(index, rng)]
        if self.kind == "mead":
            pool = self.neutral[layout.group_of(target, "mead")]
            source = self.names[pool[int(rng.integers(len(pool)))]]
        else:
            source = target
        return {"source": (source, self._random_frame(source, rng)),
                "target": (target, self._random_frame(target, rng))}

    def __getitem__(self, index: int) -> dict:
        return {key: to_tensor(self._image(*ref)) for key, ref in self.plan(index).items()}


class Stage1Items(_TreeDataset):
    """Stage-1 (mouth/pose cross-reconstruction) items; see the module docstring."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None):
        super().__init__(root, split, size, seed, store, length)

    def plan(self, index: int) -> dict:
        """{"a_id", "a", "b_id", "b"} → (name, frame) of item `index`."""
        rng = self._rng(index)
        clip_a = self.names[self._clip_index(index, rng)]
        group_b = self.group_names[int(rng.integers(len(self.group_names)))]
        members = self.groups[group_b]
        clip_b = self.names[members[int(rng.integers(len(members)))]]
        return {"a_id": (clip_a, self._random_frame(clip_a, rng)), "a": (clip_a, self._random_frame(clip_a, rng)),
                "b_id": (clip_b, self._random_frame(clip_b, rng)), "b": (clip_b, self._random_frame(clip_b, rng))}

    def __getitem__(self, index: int) -> dict:
        refs = self.plan(index)
        images = {key: self._image(*ref) for key, ref in refs.items()}
        lm_a, lm_b = self._landmarks(*refs["a"]), self._landmarks(*refs["b"])
        images["a_b"] = mouth_swap(images["a"], lm_a, images["b"], lm_b)
        images["b_a"] = mouth_swap(images["b"], lm_b, images["a"], lm_a)
        return {key: to_tensor(img) for key, img in images.items()}
