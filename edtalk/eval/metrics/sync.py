"""Lip sync: LSE-D / LSE-C from audio and video embeddings searched over temporal offsets (spec §9).

For every offset k in −K…+K (K = 15 frames) video frame i is paired with audio frame i+k; the
distance of a pair is the Euclidean distance of the two embeddings, averaged over the frames where
both exist.  LSE-D = the minimum mean distance, LSE-C = median − minimum (a sharp minimum = a
confident sync), and the offset at the minimum is the estimated AV offset (0 = in sync).

Embedders:
- :class:`SyncNetV2Scorer`: the field's syncnet_v2 as a user file (TorchScript or torch.export
  .pt2 of a module ``forward(mfcc [N,1,13,20], video [N,3,5,224,224]) → (audio_emb, video_emb)``);
  MFCC from python_speech_features at 100 Hz (4 rows a frame, 20 rows per 5-frame window), video
  windows of five 224² face crops, float 0–255 in BGR order (as syncnet_python feeds it).  Crops are
  squares of 1.4× the dlib face box, not syncnet_python's S3FD tracks.
- :class:`SyncExpertScorer`: the SyncNet expert of spec §2.10 (:mod:`edtalk.networks.syncnet`; mel
  windows and the lower half of five 96² face crops) — a stand-in, not comparable to syncnet_v2's
  LSE numbers.

Every window is centred on its frame: frame i pairs video frames i−2…i+2 with the audio of the
same 0.2 s, clamped at the clip's ends.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...audio import mel_windows
from .clip import face_crops


def offset_distances(video_emb, audio_emb, max_offset: int = 15):
    """(offsets [2K+1], mean distance per offset [2K+1]) for embeddings [T,D] (video) and [Ta,D] (audio)."""
    v = torch.as_tensor(video_emb, dtype=torch.float64)
    a = torch.as_tensor(audio_emb, dtype=torch.float64)
    offsets = np.arange(-max_offset, max_offset + 1)
    dists = np.full(len(offsets), np.nan)
    for j, k in enumerate(offsets):
        lo, hi = max(0, -k), min(len(v), len(a) - k)  # video frames i with audio frame i+k present
        if hi > lo:
            dists[j] = float((v[lo:hi] - a[lo + k:hi + k]).norm(dim=1).mean())
    return offsets, dists


def lse_scores(video_emb, audio_emb, max_offset: int = 15) -> dict:
    """{'lse_d': min mean distance, 'lse_c': median − min, 'offset': offset at the minimum}."""
    offsets, dists = offset_distances(video_emb, audio_emb, max_offset)
    valid = np.isfinite(dists)
    if not valid.any():
        raise ValueError("no overlapping audio/video frames for any offset")
    best = int(np.nanargmin(dists))
    lse_d = float(dists[best])
    return {"lse_d": lse_d, "lse_c": float(np.median(dists[valid]) - lse_d), "offset": int(offsets[best])}


def face_windows(frames: np.ndarray, boxes: Optional[np.ndarray] = None, size: int = 96) -> torch.Tensor:
    """[T,15,size/2,size] SyncNet inputs: for frame i the lower halves of the face crops of frames
    i−2…i+2 (clamped at the ends), frame-major, RGB in [0,1] (Wav2Lip's convention)."""
    lower = face_crops(frames, boxes, size)[:, :, size // 2:]  # [T,3,size/2,size]
    return lower[torch.from_numpy(window_indices(len(frames)))].flatten(1, 2)  # [T,5,3,h,w] → [T,15,h,w]


def window_indices(num_frames: int) -> np.ndarray:
    """[T,5] frame indices i−2…i+2 of every frame's window, clamped to the clip."""
    return np.clip(np.arange(num_frames)[:, None] + np.arange(-2, 3)[None], 0, num_frames - 1)


class SyncScorer:
    """LSE from `embeddings(frames, wav, boxes) → (video [T,D], audio [T,D])`."""

    comparable = False

    def embeddings(self, frames: np.ndarray, wav: np.ndarray, boxes: Optional[np.ndarray] = None):
        raise NotImplementedError

    def score(self, frames: np.ndarray, wav: np.ndarray, boxes: Optional[np.ndarray] = None,
              max_offset: int = 15) -> dict:
        video, audio = self.embeddings(frames, wav, boxes)
        return lse_scores(video, audio, max_offset)


class SyncExpertScorer(SyncScorer):
    """LSE with a SyncNet expert (spec §2.10). Not comparable to syncnet_v2 LSE values."""

    def __init__(self, syncnet, device="cpu", batch: int = 64):
        self.net = syncnet.to(device).eval().requires_grad_(False)
        self.device, self.batch = device, batch

    @torch.inference_mode()
    def _embed(self, fn, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[s:s + self.batch].to(self.device)).cpu() for s in range(0, len(x), self.batch)])

    def embeddings(self, frames: np.ndarray, wav: np.ndarray, boxes: Optional[np.ndarray] = None):
        mels = mel_windows(wav)
        n = min(len(frames), len(mels))
        video = self._embed(self.net.embed_face, face_windows(frames[:n], None if boxes is None else boxes[:n]))
        audio = self._embed(self.net.embed_audio, mels[:n])
        return video, audio


MFCC_PER_FRAME = 4  # python_speech_features: 10 ms steps, 40 ms video frames
V2_SIZE = 224


def mfcc_windows(wav: np.ndarray, num_frames: int) -> torch.Tensor:
    """[T,1,13,20] MFCC windows (100 Hz, 13 coefficients) covering video frames i−2…i+2."""
    from python_speech_features import mfcc

    from ...audio import SAMPLE_RATE

    rows = mfcc(np.asarray(wav, np.float64), SAMPLE_RATE)  # [N,13]
    pad = 2 * MFCC_PER_FRAME
    rows = np.pad(rows, ((pad, 5 * MFCC_PER_FRAME), (0, 0)), mode="edge")
    starts = np.arange(num_frames) * MFCC_PER_FRAME  # = 4(i−2) in the unpadded rows
    idx = starts[:, None] + np.arange(5 * MFCC_PER_FRAME)[None]
    return torch.from_numpy(rows[idx].transpose(0, 2, 1)[:, None].astype(np.float32))


class SyncNetV2Scorer(SyncScorer):
    """syncnet_v2 from a user file: forward(mfcc [N,1,13,20], video [N,3,5,224,224] BGR 0–255) → (a, v)."""

    comparable = True

    def __init__(self, network, device="cpu", batch: int = 8):
        self.net, self.device, self.batch = network, device, batch

    @torch.inference_mode()
    def embeddings(self, frames: np.ndarray, wav: np.ndarray, boxes: Optional[np.ndarray] = None):
        from ...audio import frame_count

        n = min(len(frames), frame_count(len(wav)))
        # squares of 1.4× the face box, 0–255, RGB → BGR
        crops = face_crops(frames[:n], None if boxes is None else boxes[:n], V2_SIZE, 1.4, square=True).flip(1) * 255
        mfccs = mfcc_windows(wav, n)
        windows = torch.from_numpy(window_indices(n))
        video, audio = [], []
        for s in range(0, n, self.batch):
            clips = crops[windows[s:s + self.batch]].permute(0, 2, 1, 3, 4)  # [b,5,3,H,W] → [b,3,5,H,W]
            a, v = self.net(mfccs[s:s + self.batch].to(self.device), clips.to(self.device))
            audio.append(a.float().flatten(1).cpu())
            video.append(v.float().flatten(1).cpu())
        return torch.cat(video), torch.cat(audio)
