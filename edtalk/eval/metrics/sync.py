"""Lip sync: LSE-D / LSE-C from audio and video embeddings searched over temporal offsets (spec §9).

For every offset k in −K…+K (K = 15 frames) video frame i is paired with audio frame i+k; the
distance of a pair is the Euclidean distance of the two embeddings, averaged over the frames where
both exist.  LSE-D = the minimum mean distance, LSE-C = median − minimum (a sharp minimum = a
confident sync), and the offset at the minimum is the estimated AV offset (0 = in sync).

Embedders: the SyncNet expert of spec §2.10 (:mod:`edtalk.networks.syncnet`; mel windows and
the lower half of five 96² face crops) — a stand-in, not comparable to the paper's syncnet_v2
(MFCC, 224² face tracks) LSE numbers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...audio import mel_windows


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
    crops = []
    h, w = frames.shape[1:3]
    for i, frame in enumerate(frames):
        x1, y1, x2, y2 = 0, 0, w, h
        if boxes is not None and np.isfinite(boxes[i]).all():
            x1, y1 = max(0, int(boxes[i][0])), max(0, int(boxes[i][1]))
            x2, y2 = min(w, int(boxes[i][2])), min(h, int(boxes[i][3]))
            if x2 - x1 < 2 or y2 - y1 < 2:
                x1, y1, x2, y2 = 0, 0, w, h
        crop = torch.from_numpy(np.ascontiguousarray(frame[y1:y2, x1:x2])).permute(2, 0, 1)[None].float() / 255
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0])
    lower = torch.stack(crops)[:, :, size // 2:]  # [T,3,size/2,size]
    idx = np.clip(np.arange(len(frames))[:, None] + np.arange(-2, 3)[None], 0, len(frames) - 1)
    return lower[torch.from_numpy(idx)].flatten(1, 2)  # [T,5,3,h,w] → [T,15,h,w]


class SyncExpertScorer:
    """LSE with a SyncNet expert (spec §2.10). Not comparable to syncnet_v2 LSE values."""

    comparable = False

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

    def score(self, frames: np.ndarray, wav: np.ndarray, boxes: Optional[np.ndarray] = None,
              max_offset: int = 15) -> dict:
        video, audio = self.embeddings(frames, wav, boxes)
        return lse_scores(video, audio, max_offset)
