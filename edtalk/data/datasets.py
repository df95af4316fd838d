"""Torch datasets for training stages 0 and 1 over trees in the :mod:`edtalk.data.layout` format.

Items (images: float32 tensors [3,S,S] in [-1,1], RGB; S = `size`, or the tree's frame size)::

    Stage0Pairs  (spec §8.1)  {"source": ..., "target": ...}
        MEAD: target = a random frame of clip i; source = a random frame of a random *neutral*
              clip of the same speaker (any clip of the speaker if it has no neutral clip).
        HDTF: source and target = two random frames (with replacement) of clip i.

    Stage1Items  (spec §8.2, §7.4)  {"a_id", "a", "b_id", "b", "a_b", "b_a", "mouth_box_a", "mouth_box_b"}
        a_id, a   two random frames of clip i (identity frame, target frame);
        b_id, b   two random frames of a random clip of a random group (speaker for MEAD, video
                  for HDTF; it may be clip i's own group);
        a_b       a with b's mouth  (mouth_swap(a, lm_a, b, lm_b));
        b_a       b with a's mouth;
        mouth_box_a/b  int64 [4] (x1, y1, x2, y2): the lip box of a/b that the swap pasted.

Both datasets:

- `root`: one tree, or several as a list or joined with ``os.pathsep`` — spec §8.1 pairs come from
  MEAD+HDTF: ``Stage0Pairs("data/mead:data/hdtf")`` (each clip keeps its own tree's rule);
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
from edtalk.data.mouth_swap import mouth_box, mouth_swap
from edtalk.data.store import FrameStore, open_frames, resize_frame
from edtalk.errors import InputError

__all__ = ["Stage0Pairs", "Stage1Items", "to_tensor", "scale_landmarks", "split_roots"]


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] → float32 [3,H,W] in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def scale_landmarks(landmarks: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Landmarks of a from_size² frame → the same frame resized to to_size² (pixel centres aligned)."""
    if from_size == to_size:
        return np.asarray(landmarks, dtype=np.float64)
    k = to_size / from_size
    return (np.asarray(landmarks, dtype=np.float64) + 0.5) * k - 0.5


def split_roots(root) -> list:
    """One tree path, a sequence of them, or one string joining several with os.pathsep
    ("data/mead:data/hdtf", as in PATH) → [Path, …]."""
    if isinstance(root, (str, os.PathLike)):
        parts = [p for p in os.fspath(root).split(os.pathsep) if p]
    else:
        parts = [os.fspath(p) for p in root]
    if not parts:
        raise InputError("no data root given")
    return [Path(p) for p in parts]


class _Tree:
    """One tree's split: names, kind, frame reader and native frame size."""

    def __init__(self, root: Path, split: str, store):
        self.root = root
        self.names = layout.read_split(root, split)
        if not self.names:
            raise InputError(f"{root}/{split}.json lists no clips")
        kinds = {layout.name_kind(n) for n in self.names}
        if len(kinds) != 1:
            raise InputError(f"{root}/{split}.json mixes MEAD and HDTF names")
        self.kind = kinds.pop()
        self.store = store if store is not None else open_frames(root)
        self.native_size = native_frame_size(root, self.names[0], self.store)


def native_frame_size(root: Path, name: str, store) -> int:
    """The clips' frame side: read off a stored frame when the tree has an LMDB (no ffmpeg needed,
    so a machine with the store alone trains), else probed from the clip's MP4."""
    if isinstance(store, FrameStore):
        return int(store.frame(name, 0).shape[1])
    from edtalk.video import probe_video

    return int(probe_video(layout.clip_path(root, "video", name))["width"])


class _TreeDataset(Dataset):
    """Clips of one split of one or more trees, grouped by speaker (MEAD) or video (HDTF)."""

    def __init__(self, root, split: str = "train", size: Optional[int] = None, seed: int = 0,
                 store=None, length: Optional[int] = None):
        if split not in layout.SPLITS:
            raise InputError(f"split must be one of {layout.SPLITS}, got {split!r}")
        self.split = split
        self.trees = [_Tree(r, split, store) for r in split_roots(root)]
        self.root = self.trees[0].root
        self.names: list = []
        self._tree_of: dict = {}
        self.groups: dict = {}  # (tree index, speaker or video) → clip indices
        for t, tree in enumerate(self.trees):
            for name in tree.names:
                if name in self._tree_of:
                    raise InputError(f"clip {name!r} is in two data roots")
                self._tree_of[name] = tree
                self.groups.setdefault((t, layout.group_of(name, tree.kind)), []).append(len(self.names))
                self.names.append(name)
        self.group_names = sorted(self.groups)
        self.seed = int(seed)
        self.epoch = 0
        self.length = None if length is None else int(length)
        if self.length is not None and self.length < 1:
            raise InputError(f"length must be positive, got {length}")
        native = {tree.native_size for tree in self.trees}
        if size is None and len(native) > 1:
            raise InputError(f"data roots have different frame sizes {sorted(native)}: give a size")
        self.native_size = native.pop() if len(native) == 1 else None
        self.size = int(size) if size is not None else self.native_size

    def kind_of(self, name: str) -> str:
        return self._tree_of[name].kind

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
        return int(rng.integers(self._tree_of[name].store.num_frames(name)))

    def _image(self, name: str, index: int) -> np.ndarray:
        return resize_frame(self._tree_of[name].store.frame(name, index), self.size)

    def _landmarks(self, name: str, index: int) -> np.ndarray:
        tree = self._tree_of[name]
        lm = np.load(layout.clip_path(tree.root, "landmark", name), mmap_mode="r")[index]
        return scale_landmarks(lm, tree.native_size, self.size)


class Stage0Pairs(_TreeDataset):
    """Stage-0 (LIA fine-tune) pairs {"source", "target"}; see the module docstring."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None):
        super().__init__(root, split, size, seed, store, length)
        self.neutral: dict = {}  # MEAD clip index → the neutral clips of its speaker (all its clips if none)
        for clips in self.groups.values():
            if self.kind_of(self.names[clips[0]]) != "mead":
                continue
            neutral = [k for k in clips if layout.parse_mead_name(self.names[k]).emotion == "neutral"]
            for k in clips:
                self.neutral[k] = neutral or clips

    def plan(self, index: int) -> dict:
        """{"source": (name, frame), "target": (name, frame)} of item `index`."""
        rng = self._rng(index)
        clip = self._clip_index(index, rng)
        target = self.names[clip]
        if clip in self.neutral:
            pool = self.neutral[clip]
            source = self.names[pool[int(rng.integers(len(pool)))]]
        else:
            source = target
        return {"source": (source, self._random_frame(source, rng)),
                "target": (target, self._random_frame(target, rng))}

    def __getitem__(self, index: int) -> dict:
        return {key: to_tensor(self._image(*ref)) for key, ref in self.plan(index).items()}


class Stage1Items(_TreeDataset):
    """Stage-1 (mouth/pose cross-reconstruction) items; see the module docstring."""

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
        item = {key: to_tensor(img) for key, img in images.items()}
        # The swapped boxes (targets' lips + margin): where stage 1's optional mouth term looks.
        item["mouth_box_a"] = torch.tensor(mouth_box(lm_a, self.size), dtype=torch.long)
        item["mouth_box_b"] = torch.tensor(mouth_box(lm_b, self.size), dtype=torch.long)
        return item
