"""Sequence and utterance items for audio-to-pose (docs/design.md §8.5) and audio/text-to-expression (§8.6).

Both stages see audio only through the frozen Audio2Lip encoder: its 512-d embedding of each
frame's 80×16 mel window (:func:`edtalk.audio.mel_windows`, or `mel/<name>.npy`), computed by
:mod:`edtalk.audio_features` (shared with generation) once per clip when the stage starts
(:func:`clip_table`), so items are cheap slices.

Items (randomness of item i from ``numpy.random.default_rng([seed, epoch, i])``)::

    PoseSequences   {"poses" [H+L,6], "audio" [L+2c,512]}
        clip ~ U (or clip i), start s ~ U{0…T−L}; poses of frames s−H…s+L−1 and embeddings of
        frames s−c…s+L+c−1, indices clamped to the clip (its first / last frame repeats).
    ExpressionItems {"audio" [1024], "text" [K], "exp" [10], "emotion" [] (−1: no label), "r" []}
        one clip's utterance features, its mean α_e and emotion; r ~ U(0,1) drives the
        modality dropout (:func:`edtalk.networks.expression_predictor.modality_keep`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio_features import audio_embeddings, with_energy
from ..errors import InputError
from . import layout
from .motion_cache import load_motion

__all__ = ["clip_table", "emotion_label", "PoseSequences", "ExpressionItems"]


def emotion_label(name: str) -> int:
    """Index into layout.EMOTIONS for a MEAD-style name; −1 for unlabelled (HDTF) clips."""
    if layout.name_kind(name) != "mead":
        return -1
    return layout.EMOTIONS.index(layout.parse_mead_name(name).emotion)


def clip_table(root, names: Sequence[str], audio2lip, part: Optional[str], progress: bool = False,
               energy: bool = False) -> Dict[str, dict]:
    """name → {"audio": [T,512] embeddings (+ a log-RMS column with `energy`), "motion": [T,dim]
    cached α of `part` (or None)}, both cut to the shorter of the two."""
    from .audio_datasets import clip_mels

    table = {}
    items = names
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(names, desc="audio embeddings", unit="clip", dynamic_ncols=True)
    for name in items:
        emb = audio_embeddings(audio2lip, clip_mels(root, name))
        if energy:
            from ..audio import load_audio

            emb = with_energy(emb, load_audio(str(layout.clip_path(root, "audio", name))))
        motion = torch.from_numpy(load_motion(root, name, part)) if part else None
        n = len(emb) if motion is None else min(len(emb), len(motion))
        table[name] = {"audio": emb[:n], "motion": None if motion is None else motion[:n]}
    return table


class _Items(Dataset):
    """Per-(seed, epoch, index) randomness; `length` items per epoch (default one per clip)."""

    def __init__(self, count: int, seed: int = 0, length: Optional[int] = None):
        self.count, self.seed, self.epoch = count, int(seed), 0
        self.length = None if length is None else int(length)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length if self.length is not None else self.count

    def _rng_and_clip(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return rng, (index if self.length is None else int(rng.integers(self.count)))


class PoseSequences(_Items):
    def __init__(self, table: Dict[str, dict], seq_len: int = 80, history: int = 10, context: int = 5,
                 seed: int = 0, length: Optional[int] = None):
        self.names: List[str] = [n for n, t in table.items() if len(t["audio"]) >= seq_len]
        if not self.names:
            raise InputError(f"no clip has {seq_len} frames (data.seq_len); use shorter sequences")
        super().__init__(len(self.names), seed, length)
        self.table, self.seq_len, self.history, self.context = table, int(seq_len), int(history), int(context)

    def plan(self, index: int) -> dict:
        rng, clip = self._rng_and_clip(index)
        name = self.names[clip]
        start = int(rng.integers(len(self.table[name]["audio"]) - self.seq_len + 1))
        return {"clip": name, "start": start}

    def __getitem__(self, index: int) -> dict:
        p = self.plan(index)
        t = self.table[p["clip"]]
        n, s, L = len(t["audio"]), p["start"], self.seq_len
        pose_idx = np.clip(np.arange(s - self.history, s + L), 0, n - 1)
        audio_idx = np.clip(np.arange(s - self.context, s + L + self.context), 0, n - 1)
        return {"poses": t["motion"][pose_idx], "audio": t["audio"][audio_idx]}


class ExpressionItems(_Items):
    def __init__(self, audio: torch.Tensor, text: torch.Tensor, exp: torch.Tensor, emotion: torch.Tensor,
                 seed: int = 0, length: Optional[int] = None):
        super().__init__(len(audio), seed, length)
        self.audio, self.text, self.exp, self.emotion = audio, text, exp, emotion

    def __getitem__(self, index: int) -> dict:
        rng, i = self._rng_and_clip(index)
        return {"audio": self.audio[i], "text": self.text[i], "exp": self.exp[i], "emotion": self.emotion[i],
                "r": torch.tensor(float(rng.random()))}
