"""Lip sync: LSE-D / LSE-C the way joonson/syncnet_python computes them (``SyncNetInstance.evaluate``).

- **Audio**: the 16 kHz track as int16 samples (what ``wavfile.read`` gives the reference), MFCC
  from python_speech_features with its defaults (13 coefficients, 100 rows a second, c0 = log
  frame energy).  Float audio in [−1, 1] would move c0 by −2·ln 32768 ≈ −20.8, far outside what
  syncnet_v2 saw in training.
- **Windows**: N = min(video frames, ⌊samples / 640⌋); windows i = 0 … N−6 (N−5 of them, no
  padding): video frames i…i+4 and MFCC rows 4i…4i+19.
- **Offsets**: for video window i and shift j ∈ [−K, K] the distance to audio window i+j, with
  zero vectors outside the clip (the reference pads the audio embeddings with zeros); the mean
  over all N−5 video windows per shift.  LSE-D = the smallest mean, LSE-C = median − smallest, and
  the AV offset = −(shift at the minimum), the reference's sign (``offset = vshift − argmin``).

Networks: :class:`SyncNetV2Scorer` (syncnet_v2 on 224² BGR 0–255 crops; the crop is the
protocol's, see :mod:`.align`) and :class:`SyncExpertScorer` (the SyncNet expert of
:mod:`edtalk.networks.syncnet` on mel windows: a stand-in, not syncnet_v2's numbers).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...audio import SAMPLE_RATE, SAMPLES_PER_FRAME, mel_windows
from .clip import face_crops

VSHIFT = 15  # syncnet_python's default search, ± frames
MFCC_PER_FRAME = 4  # 10 ms MFCC rows per 40 ms video frame
WINDOW = 5  # frames per SyncNet window


def int16_samples(wav: np.ndarray) -> np.ndarray:
    """float audio in [−1, 1] → the int16 samples a 16-bit WAV holds (×32768, rounded, clipped)."""
    return np.clip(np.rint(np.asarray(wav, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def mfcc_rows(wav: np.ndarray) -> np.ndarray:
    """[13, R] float32 MFCC of the int16 samples (python_speech_features defaults, 16 kHz)."""
    from python_speech_features import mfcc

    return mfcc(int16_samples(wav), SAMPLE_RATE).T.astype(np.float32)


def window_count(num_frames: int, num_samples: int) -> int:
    """N − 5, N = min(frames, ⌊samples/640⌋): the reference's `lastframe`."""
    return max(0, min(int(num_frames), int(num_samples) // SAMPLES_PER_FRAME) - WINDOW)


def mfcc_windows(wav: np.ndarray, count: int) -> torch.Tensor:
    """[count,1,13,20]: MFCC rows 4i … 4i+19 for window i."""
    rows = torch.from_numpy(mfcc_rows(wav))
    return torch.stack([rows[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + 20] for i in range(count)])[:, None]


def padded_distances(video_emb, audio_emb, max_offset: int = VSHIFT) -> torch.Tensor:
    """[T, 2K+1] distances of video window i to audio window i+j (j = −K…K; zero embeddings
    outside the clip), ``torch.nn.functional.pairwise_distance`` as the reference uses it."""
    v = torch.as_tensor(video_emb, dtype=torch.float32)
    a = torch.as_tensor(audio_emb, dtype=torch.float32)
    padded = F.pad(a, (0, 0, max_offset, max_offset))
    width = 2 * max_offset + 1
    return torch.stack([F.pairwise_distance(v[i:i + 1].expand(width, -1), padded[i:i + width])
                        for i in range(len(v))])


def lse_scores(video_emb, audio_emb, max_offset: int = VSHIFT) -> dict:
    """{'lse_d', 'lse_c', 'offset', 'windows'} from per-window embeddings [T,D] (see the module doc)."""
    if len(video_emb) == 0:
        raise ValueError("no SyncNet window: the clip is shorter than 6 frames")
    mean = padded_distances(video_emb, audio_emb, max_offset).mean(dim=0)
    best = int(torch.argmin(mean))
    lse_d = float(mean[best])
    return {"lse_d": lse_d, "lse_c": float(torch.median(mean)) - lse_d, "offset": max_offset - best,
            "windows": len(video_emb)}


class SyncNetV2Scorer:
    """syncnet_v2 on the protocol's 224² face crops (RGB uint8 [T,224,224,3]) and the clip's audio."""

    def __init__(self, network, device="cpu", batch: int = 20):
        self.net, self.device, self.batch = network, device, batch

    def _forward(self, mfcc: torch.Tensor, video: torch.Tensor):
        if hasattr(self.net, "forward_aud"):
            return self.net.forward_aud(mfcc), self.net.forward_lip(video)
        return self.net(mfcc, video)

    @torch.inference_mode()
    def embeddings(self, crops: np.ndarray, wav: np.ndarray):
        """(video [W,D], audio [W,D]) for the W = N−5 windows."""
        count = window_count(len(crops), len(wav))
        bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(3, 0, 1, 2).float()  # [3,T,H,W]
        mfccs = mfcc_windows(wav, count)
        video, audio = [], []
        for s in range(0, count, self.batch):
            idx = range(s, min(count, s + self.batch))
            clips = torch.stack([bgr[:, i:i + WINDOW] for i in idx])
            a, v = self._forward(mfccs[s:s + len(idx)].to(self.device), clips.to(self.device))
            audio.append(a.float().flatten(1).cpu())
            video.append(v.float().flatten(1).cpu())
        if not video:
            return torch.zeros(0, 1), torch.zeros(0, 1)
        return torch.cat(video), torch.cat(audio)

    def score(self, crops: np.ndarray, wav: np.ndarray, max_offset: int = VSHIFT) -> dict:
        return lse_scores(*self.embeddings(crops, wav), max_offset)


def face_windows(frames: np.ndarray, boxes: Optional[np.ndarray] = None, size: int = 96) -> torch.Tensor:
    """[T,15,size/2,size] SyncNet-expert inputs: for frame i the lower halves of the face crops of
    frames i−2…i+2 (clamped at the ends), frame-major, RGB in [0,1] (Wav2Lip's convention)."""
    lower = face_crops(frames, boxes, size)[:, :, size // 2:]  # [T,3,size/2,size]
    return lower[torch.from_numpy(window_indices(len(frames)))].flatten(1, 2)  # [T,5,3,h,w] → [T,15,h,w]


def window_indices(num_frames: int) -> np.ndarray:
    """[T,5] frame indices i−2…i+2 of every frame's window, clamped to the clip."""
    return np.clip(np.arange(num_frames)[:, None] + np.arange(-2, 3)[None], 0, num_frames - 1)


class SyncExpertScorer:
    """LSE with a SyncNet expert (docs/design.md §2.10) on mel windows and 96² face boxes: a stand-in whose
    values are not syncnet_v2's; the offset search is the reference's."""

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
              max_offset: int = VSHIFT) -> dict:
        return lse_scores(*self.embeddings(frames, wav, boxes), max_offset)
