"""Torch datasets for training stages 0 and 1 over trees in the :mod:`edtalk.data.layout` format.

Items (images: float32 tensors [3,S,S] in [-1,1], RGB; S = `size`, or the tree's frame size)::

    Stage0Pairs  (docs/design.md §8.1)  {"source": ..., "target": ...} (+ "target_regions" with `regions`)
        MEAD: target = a random frame of clip i; source = a random frame of a random *neutral*
              clip of the same speaker (any clip of the speaker if it has no neutral clip).
        HDTF: source and target = two random frames (with replacement) of clip i.
        `same_frame_rate` p: with probability p the source is the target's frame index in the
        neutral clip (clamped to its length); on a `--shared-motion` SynthTalk tree such a pair
        differs only in expression.
        `regions` (e.g. ("brows", "eyes", "mouth")): also "target_regions" int64 [R,4], the
        target's boxes of those landmark groups (:func:`region_boxes`), for a region L1 term.

    Stage1Items  (docs/design.md §8.2, §7.4)  {"a_id", "a", "b_id", "b", "a_b", "b_a", "mouth_box_a", "mouth_box_b"}
        a_id, a   two random frames of clip i (identity frame, target frame);
        b_id, b   two random frames of a random clip of a random group (speaker for MEAD, video
                  for HDTF; it may be clip i's own group);
                  with `cross_clip_rate` p > 0 each identity frame a_id / b_id comes with
                  probability p from another clip of its target's group instead;
        a_b       a with b's mouth  (mouth_swap(a, lm_a, b, lm_b));
        b_a       b with a's mouth;
        mouth_box_a/b  int64 [4] (x1, y1, x2, y2): the lip box of a/b that the swap pasted.

    Stage2Items  (docs/design.md §8.3)  {"source", "target"}: neutral source, target of a random emotion of
        the same speaker (the stage-2 trainer's plan); options `exp_pair_rate` (targets with an
        emotion) and `max_pose_gap` (target frame within a pose gap of the source, from the tree's
        true factors).

All datasets:

- `root`: one tree, or several as a list or joined with ``os.pathsep`` — docs/design.md §8.1 pairs come from
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

__all__ = ["Stage0Pairs", "Stage1Items", "Stage2Items", "pose_distance", "POSE_SPAN", "probability", "to_tensor",
           "scale_landmarks", "split_roots", "REGION_LANDMARKS", "region_boxes"]

# 68-point landmark groups of the face regions an expression moves (iBUG numbering).
REGION_LANDMARKS = {"brows": slice(17, 27), "eyes": slice(36, 48), "mouth": slice(48, 68)}
REGION_MARGIN = 0.06  # box margin, as a fraction of the frame size (4 px at 64², 15 px at 256²)


def region_boxes(landmarks: np.ndarray, size: int, parts) -> np.ndarray:
    """int64 [R,4] (x1, y1, x2, y2; x2/y2 exclusive) boxes of the landmark groups `parts`
    (:data:`REGION_LANDMARKS`) of a size² frame, each with a margin, clipped to the frame."""
    lm = np.asarray(landmarks, dtype=np.float64)
    boxes = np.zeros((len(parts), 4), np.int64)
    margin = REGION_MARGIN * size
    for i, part in enumerate(parts):
        pts = lm[REGION_LANDMARKS[part]]
        lo = np.floor(pts.min(0) - margin)
        hi = np.ceil(pts.max(0) + margin) + 1
        boxes[i] = np.clip([lo[0], lo[1], hi[0], hi[1]], 0, size)
    return boxes


def check_regions(regions) -> tuple:
    """The region names as a tuple, else one InputError line naming the unknown ones."""
    parts = tuple(str(r) for r in (regions or ()))
    unknown = [r for r in parts if r not in REGION_LANDMARKS]
    if unknown:
        raise InputError(f"unknown face region(s) {unknown}; expected some of {sorted(REGION_LANDMARKS)}")
    return parts


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] → float32 [3,H,W] in [-1,1] (the arithmetic in numpy: the same float32
    results without a dozen aten calls per frame in the training process)."""
    x = np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32)
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return torch.from_numpy(x)


def scale_landmarks(landmarks: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Landmarks of a from_size² frame → the same frame resized to to_size² (pixel centres aligned)."""
    if from_size == to_size:
        return np.asarray(landmarks, dtype=np.float64)
    k = to_size / from_size
    return (np.asarray(landmarks, dtype=np.float64) + 0.5) * k - 0.5


def probability(value, name: str) -> float:
    """float(value) in [0, 1], else one InputError line naming the option."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not 0.0 <= x <= 1.0:
        raise InputError(f"{name} must be a probability in [0, 1], got {value!r}")
    return x


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

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None, regions=(),
                 same_frame_rate: float = 0.0):
        super().__init__(root, split, size, seed, store, length)
        self.regions = check_regions(regions)
        self.same_frame_rate = probability(same_frame_rate, "same_frame_rate")
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
        plan = {"source": (source, self._random_frame(source, rng)),
                "target": (target, self._random_frame(target, rng))}
        # drawn only when on, so the default plan draws exactly what it always drew
        if self.same_frame_rate > 0 and rng.random() < self.same_frame_rate:
            last = self._tree_of[source].store.num_frames(source) - 1
            plan["source"] = (source, min(plan["target"][1], last))
        return plan

    def __getitem__(self, index: int) -> dict:
        plan = self.plan(index)
        item = {key: to_tensor(self._image(*ref)) for key, ref in plan.items()}
        if self.regions:
            item["target_regions"] = torch.from_numpy(
                region_boxes(self._landmarks(*plan["target"]), self.size, self.regions))
        return item


class Stage1Items(_TreeDataset):
    """Stage-1 (mouth/pose cross-reconstruction) items; see the module docstring.

    `cross_clip_rate` p (default 0): each identity frame (a_id for a, b_id for b, independently)
    comes with probability p from another clip of its target's group (speaker for MEAD, video for
    HDTF), so source and driver differ in pose, expression and lighting of the clip as they do at
    use time; a group with a single clip in the split keeps the same-clip frame.  p = 0 is exactly
    the original plan; for p > 0 the extra draws come after the original ones, so a, b and the
    same-clip choices of an item do not depend on p.
    """

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None,
                 cross_clip_rate: float = 0.0):
        super().__init__(root, split, size, seed, store, length)
        self.cross_clip_rate = probability(cross_clip_rate, "cross_clip_rate")
        self.other_clips: dict = {}  # clip index → the other clips of its group
        for clips in self.groups.values():
            for k in clips:
                self.other_clips[k] = [j for j in clips if j != k]

    def plan(self, index: int) -> dict:
        """{"a_id", "a", "b_id", "b"} → (name, frame) of item `index`."""
        rng = self._rng(index)
        a = self._clip_index(index, rng)
        clip_a = self.names[a]
        group_b = self.group_names[int(rng.integers(len(self.group_names)))]
        members = self.groups[group_b]
        b = members[int(rng.integers(len(members)))]
        clip_b = self.names[b]
        plan = {"a_id": (clip_a, self._random_frame(clip_a, rng)), "a": (clip_a, self._random_frame(clip_a, rng)),
                "b_id": (clip_b, self._random_frame(clip_b, rng)), "b": (clip_b, self._random_frame(clip_b, rng))}
        if self.cross_clip_rate > 0:
            for key, clip in (("a_id", a), ("b_id", b)):
                cross = rng.random() < self.cross_clip_rate
                others = self.other_clips[clip]
                if cross and others:
                    name = self.names[others[int(rng.integers(len(others)))]]
                    plan[key] = (name, self._random_frame(name, rng))
        return plan

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


# Full range of each SynthTalk pose factor (yaw, pitch, roll in rad; tx, ty in frame fractions;
# scale): edtalk.data.synthtalk.POSE_HIGH − POSE_LOW.  Pose gaps are measured in these units.
POSE_SPAN = np.array([0.8, 0.6, 0.5, 0.16, 0.16, 0.3])


def pose_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pose gap between pose factors p [...,6] and q [...,6] (broadcast): the largest per-factor
    difference as a fraction of that factor's full range (:data:`POSE_SPAN`), so a gap of 0.05
    keeps yaw within 0.04 rad, roll within 0.025 rad and tx within 0.8 % of the frame."""
    return (np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)) / POSE_SPAN).max(-1)


class Stage2Items(Stage0Pairs):
    """{"source", "target"} for stage 2 (docs/design.md §8.3), with optional expression pairs under a pose gap.

    Default plan: item i of a
    MEAD-style tree: s = the speaker of clip i (a random clip when `length` is set); the target's
    emotion is drawn uniformly from the emotions s has in the split (neutral included), then a
    random clip of that emotion and a random frame; the source is a random frame of a random
    neutral clip of s.  An HDTF clip (give both roots, "mead:hdtf") gives a same-clip pair.

    Options (both off by default; then the plan is exactly the default one):

    - `exp_pair_rate` p: with probability p the target emotion is redrawn among s's *non-neutral*
      emotions (when s has any), so the pair differs in expression: source neutral, target from
      another clip with an emotion.  The draw comes after the default ones: an item that is not
      redrawn is the default item.
    - `max_pose_gap` g: the target frame is chosen so that its pose is within g of the source
      frame's (:func:`pose_distance`, a fraction of each pose factor's range): uniformly among
      the frames of every clip of the target emotion that are within g; if the source frame has
      none, a random (source, target) pair within g over every frame of s's neutral clips and of
      those clips; if no pair is within g at all, the target frame closest to the source frame
      (best effort; :meth:`pose_gap` tells the gap of a plan).  Poses are the tree's true factors
      (`factors/<name>.npz`, which SynthTalk writes); a tree without them is refused.  Clips have
      independent pose offsets, so how small a gap a tree can honour grows with its frames per
      (speaker, emotion): more clips per label (``--clips-per``) and longer clips.
    """

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None,
                 exp_pair_rate: float = 0.0, max_pose_gap: Optional[float] = None):
        super().__init__(root, split, size, seed, store, length)
        if all(tree.kind != "mead" for tree in self.trees):
            raise InputError(f"stage 2 needs a MEAD-style tree (emotion labels in the names): {root}")
        self.by_emotion: dict = {}  # speaker group → emotion → clip indices
        self.group_of_clip: dict = {}
        for group, clips in self.groups.items():
            if self.kind_of(self.names[clips[0]]) != "mead":
                continue
            emotions: dict = {}
            for k in clips:
                emotions.setdefault(layout.parse_mead_name(self.names[k]).emotion, []).append(k)
                self.group_of_clip[k] = group
            if "neutral" not in emotions:
                raise InputError(f"speaker {group[1]} has no neutral clip in the {split} split (stage-2 sources)")
            self.by_emotion[group] = emotions
        self.exp_pair_rate = probability(exp_pair_rate, "exp_pair_rate")
        self.max_pose_gap = None
        if max_pose_gap is not None:
            try:
                gap = float(max_pose_gap)
            except (TypeError, ValueError):
                gap = float("nan")
            if isinstance(max_pose_gap, bool) or not np.isfinite(gap) or gap < 0:
                raise InputError(f"max_pose_gap must be a number ≥ 0 (a fraction of each pose factor's range) "
                                 f"or null, got {max_pose_gap!r}")
            self.max_pose_gap = gap
        self._poses: dict = {}  # clip name → [T,6] float64 true pose
        self._stacks: dict = {}  # tuple of clip indices → (poses [N,6], [(name, frame)] of each row)
        if self.max_pose_gap is not None:
            for name in self.names:
                self.pose(name)

    def pose(self, name: str) -> np.ndarray:
        """[T,6] true pose factors of a clip (yaw, pitch, roll, tx, ty, scale) from its factors file."""
        if name not in self._poses:
            path = layout.clip_path(self._tree_of[name].root, "factors", name)
            if not path.is_file():
                raise InputError(f"max_pose_gap needs the true pose of every clip (factors/<name>.npz, as SynthTalk "
                                 f"writes): missing {path}")
            try:
                with np.load(path, allow_pickle=False) as fz:
                    poses = np.asarray(fz["pose"], dtype=np.float64)
            except Exception as exc:  # a broken or foreign file: one line, not a traceback
                raise InputError(f"cannot read the pose factors of {name} from {path}: {exc}") from None
            if poses.ndim != 2 or poses.shape[1] != 6:
                raise InputError(f"{path}: pose must be [T,6], got {list(poses.shape)}")
            self._poses[name] = poses
        return self._poses[name]

    def pose_gap(self, plan: dict) -> float:
        """The pose gap (:func:`pose_distance`) between a plan's source and target frames."""
        (s, i), (t, j) = plan["source"], plan["target"]
        return float(pose_distance(self.pose(s)[i], self.pose(t)[j]))

    def _stack(self, clips) -> tuple:
        key = tuple(clips)
        if key not in self._stacks:
            names = [self.names[k] for k in key]
            poses = [self.pose(n) for n in names]
            refs = [(n, f) for n, p in zip(names, poses) for f in range(len(p))]
            self._stacks[key] = (np.concatenate(poses), refs)
        return self._stacks[key]

    def _within_gap(self, sources, targets, source: tuple, rng: np.random.Generator) -> dict:
        """(source, target) refs with the target (and, failing that, the source too) chosen under the gap."""
        gap = self.max_pose_gap
        t_poses, t_refs = self._stack(targets)
        d_source = pose_distance(self.pose(source[0])[source[1]], t_poses)
        near = np.flatnonzero(d_source <= gap)
        if near.size:
            return {"source": source, "target": t_refs[int(near[int(rng.integers(near.size))])]}
        s_poses, s_refs = self._stack(sources)
        pairs = np.flatnonzero(pose_distance(s_poses[:, None], t_poses[None]) <= gap)
        if pairs.size:
            i, j = divmod(int(pairs[int(rng.integers(pairs.size))]), len(t_refs))
            return {"source": s_refs[i], "target": t_refs[j]}
        return {"source": source, "target": t_refs[int(np.argmin(d_source))]}

    def plan(self, index: int) -> dict:
        rng = self._rng(index)
        clip = self._clip_index(index, rng)
        if clip not in self.group_of_clip:  # HDTF: two frames of the same clip
            name = self.names[clip]
            plan = {"source": (name, self._random_frame(name, rng)), "target": (name, self._random_frame(name, rng))}
            if self.max_pose_gap is not None:
                plan = self._within_gap([clip], [clip], plan["source"], rng)
            return plan
        emotions = self.by_emotion[self.group_of_clip[clip]]
        labels = sorted(emotions)
        pool = emotions[labels[int(rng.integers(len(labels)))]]
        target = self.names[pool[int(rng.integers(len(pool)))]]
        neutral = emotions["neutral"]
        source = self.names[neutral[int(rng.integers(len(neutral)))]]
        plan = {"source": (source, self._random_frame(source, rng)),
                "target": (target, self._random_frame(target, rng))}
        if self.exp_pair_rate > 0 and rng.random() < self.exp_pair_rate:
            expressive = [e for e in labels if e != "neutral"]
            if expressive:
                pool = emotions[expressive[int(rng.integers(len(expressive)))]]
                target = self.names[pool[int(rng.integers(len(pool)))]]
                plan["target"] = (target, self._random_frame(target, rng))
        if self.max_pose_gap is not None:
            plan = self._within_gap(neutral, pool, plan["source"], rng)
        return plan
