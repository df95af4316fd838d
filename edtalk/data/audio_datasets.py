"""Audio-driven training items over :mod:`edtalk.data.layout` trees: the SyncNet expert
(docs/design.md §2.10) and audio-to-lip (docs/design.md §8.4).

The lip-sync input convention (Wav2Lip's, used everywhere in edtalk — training, the audio-to-lip
sync loss and the LSE stand-in of :mod:`edtalk.eval.metrics.sync`):

- faces: for frames r…r+4, the face box of each frame cropped and resized to 96² (the
  evaluation's :func:`edtalk.face.crops.face_crops`), RGB in **[0,1]**, the
  **lower half** (rows 48–95) kept, stacked **frame-major** → [15,48,96] (channels 0–2 = frame r);
- audio: one 80×16 mel window starting at mel row trunc(80·r/25) — the window that
  :func:`edtalk.audio.mel_windows` gives frame r+2 (each frame's window is centred on it), so
  ``mels[r + 2]``.

Items (all randomness of item i from ``numpy.random.default_rng([seed, epoch, i])``)::

    SyncNetPairs   {"faces" [15,48,96], "mel" [1,80,16], "label" []}   label 1 = in sync
        clip i (a random clip when `length` is set), r ~ U{0…T−5}; with probability ½ the
        in-sync window mels[r+2], else a negative: the window of a random frame j of the same
        clip with |j − (r+2)| ≥ 5 (`min_shift`), or a random window of another clip when the
        clip is too short (or with probability `other_clip`).
    Audio2LipItems {"identity" [3,S,S], "frames" [5,3,S,S], "mels" [5,1,80,16], "mouth" [5,20],
                    "pose" [5,6], "boxes" [5,4]}
        l = min(#windows, #targets, #frames); r ~ U{0…l−7}; identity frame ~ U{0…l−2}; frames,
        mel windows, targets α_m/α_p (the motion cache, :func:`edtalk.data.motion_cache.load_motion`)
        and face boxes (pixels of the S² frames) of frames r…r+4.  Images in [-1,1].

Mel windows come from ``mel/<name>.npy`` when the tree has it, else from the WAV (computed once
per clip and process).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from edtalk.audio import mel_windows
from edtalk.data import layout
from edtalk.data.datasets import _TreeDataset, to_tensor
from edtalk.data.motion_cache import load_motion
from edtalk.errors import InputError

__all__ = ["SYNC_FRAMES", "SYNC_FACE_SIZE", "SyncNetPairs", "Audio2LipItems", "sync_face_window",
           "sync_window_index", "clip_mels"]

SYNC_FRAMES = 5       # video frames per SyncNet window
SYNC_FACE_SIZE = 96   # face crop side; the expert sees the lower half (48×96)
A2L_MARGIN = 7        # r ~ U{0…l−7} (docs/design.md §8.4)


def sync_window_index(first_frame: int) -> int:
    """Index into per-frame mel windows of the audio that matches frames r…r+4: r+2 (Wav2Lip)."""
    return int(first_frame) + SYNC_FRAMES // 2


def sync_face_window(frames: np.ndarray, boxes: Optional[np.ndarray]) -> torch.Tensor:
    """[15,48,96] expert input from 5 uint8 frames [5,H,W,3] and their face boxes [5,4]:
    96² box crops in [0,1], lower halves, frame-major."""
    from edtalk.face.crops import face_crops

    crops = face_crops(frames, boxes, SYNC_FACE_SIZE)  # [5,3,96,96] in [0,1]
    return crops[:, :, SYNC_FACE_SIZE // 2:].flatten(0, 1)


def clip_mels(root, name: str) -> np.ndarray:
    """[T,80,16] float32 per-frame mel windows of one clip (mel/<name>.npy, else from the WAV)."""
    path = layout.clip_path(root, "mel", name)
    if path.is_file():
        return np.load(path).astype(np.float32, copy=False)
    wav = layout.clip_path(root, "audio", name)
    if not wav.is_file():
        raise InputError(f"clip {name} has neither {path} nor {wav}")
    return mel_windows(str(wav))[:, 0].numpy()


class _AudioTreeDataset(_TreeDataset):
    """A tree split with per-clip mel windows and face boxes (cached per process)."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None):
        super().__init__(root, split, size, seed, store, length)
        self._mels: dict = {}
        self._boxes: dict = {}

    def mels(self, name: str) -> np.ndarray:
        if name not in self._mels:
            self._mels[name] = clip_mels(self._tree_of[name].root, name)
        return self._mels[name]

    def boxes(self, name: str) -> np.ndarray:
        """[T,4] float face boxes in pixels of the tree's native frames."""
        if name not in self._boxes:
            self._boxes[name] = np.load(layout.clip_path(self._tree_of[name].root, "bbox", name)).astype(np.float64)
        return self._boxes[name]

    def num_frames(self, name: str) -> int:
        return self._tree_of[name].store.num_frames(name)

    def native_frames(self, name: str, indices) -> np.ndarray:
        return self._tree_of[name].store.frames(name, [int(i) for i in indices])


class SyncNetPairs(_AudioTreeDataset):
    """In-sync / shifted (face window, mel window) pairs for the SyncNet expert; see the module docstring."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None,
                 min_shift: int = 5, other_clip: float = 0.0):
        super().__init__(root, split, size, seed, store, length)
        self.min_shift = int(min_shift)
        self.other_clip = float(other_clip)

    def usable(self, name: str) -> int:
        return min(self.num_frames(name), len(self.mels(name)), len(self.boxes(name)))

    def plan(self, index: int) -> dict:
        """{"clip", "first" (r), "label", "audio": (clip, window index)} of item `index`."""
        rng = self._rng(index)
        name = self.names[self._clip_index(index, rng)]
        n = self.usable(name)
        if n < SYNC_FRAMES:
            raise InputError(f"clip {name} has {n} frames; the SyncNet expert needs at least {SYNC_FRAMES}")
        r = int(rng.integers(n - SYNC_FRAMES + 1))
        centre = sync_window_index(r)
        label = int(rng.random() < 0.5)
        if label:
            return {"clip": name, "first": r, "label": 1, "audio": (name, centre)}
        far = np.flatnonzero(np.abs(np.arange(n) - centre) >= self.min_shift)
        if len(far) and not (len(self.names) > 1 and rng.random() < self.other_clip):
            return {"clip": name, "first": r, "label": 0, "audio": (name, int(far[rng.integers(len(far))]))}
        others = [k for k in self.names if k != name]
        if not others:
            raise InputError(f"clip {name} is too short for a shifted window and the split has no other clip")
        other = others[int(rng.integers(len(others)))]
        return {"clip": name, "first": r, "label": 0, "audio": (other, int(rng.integers(len(self.mels(other)))))}

    def __getitem__(self, index: int) -> dict:
        p = self.plan(index)
        frames = range(p["first"], p["first"] + SYNC_FRAMES)
        faces = sync_face_window(self.native_frames(p["clip"], frames), self.boxes(p["clip"])[list(frames)])
        mel = torch.from_numpy(np.ascontiguousarray(self.mels(p["audio"][0])[p["audio"][1]]))[None]
        return {"faces": faces, "mel": mel, "label": torch.tensor(float(p["label"]))}


class Audio2LipItems(_AudioTreeDataset):
    """Audio-to-lip windows of 5 frames (docs/design.md §8.4); see the module docstring."""

    def __init__(self, root, split="train", size=None, seed=0, store=None, length=None):
        super().__init__(root, split, size, seed, store, length)
        self._targets: dict = {}

    def targets(self, name: str) -> dict:
        """{"mouth" [T,20], "pose" [T,6]} from the motion cache (written by `edtalk extract-motion`)."""
        if name not in self._targets:
            root = self._tree_of[name].root
            self._targets[name] = {part: load_motion(root, name, part) for part in ("mouth", "pose")}
        return self._targets[name]

    def plan(self, index: int) -> dict:
        """{"clip", "first" (r), "identity"} of item `index`."""
        rng = self._rng(index)
        name = self.names[self._clip_index(index, rng)]
        t = self.targets(name)
        n = min(len(self.mels(name)), len(t["mouth"]), len(t["pose"]), self.num_frames(name))
        if n < A2L_MARGIN:
            raise InputError(f"clip {name} has {n} usable frames; audio-to-lip needs at least {A2L_MARGIN}")
        return {"clip": name, "first": int(rng.integers(n - A2L_MARGIN + 1)), "identity": int(rng.integers(n - 1))}

    def __getitem__(self, index: int) -> dict:
        p = self.plan(index)
        name, window = p["clip"], slice(p["first"], p["first"] + SYNC_FRAMES)
        frames = [self._image(name, i) for i in range(window.start, window.stop)]
        t = self.targets(name)
        scale = self.size / self._tree_of[name].native_size
        return {
            "identity": to_tensor(self._image(name, p["identity"])),
            "frames": torch.stack([to_tensor(f) for f in frames]),
            "mels": torch.from_numpy(np.ascontiguousarray(self.mels(name)[window]))[:, None],
            "mouth": torch.from_numpy(np.ascontiguousarray(t["mouth"][window])),
            "pose": torch.from_numpy(np.ascontiguousarray(t["pose"][window])),
            "boxes": torch.from_numpy(self.boxes(name)[window] * scale).float(),
        }
