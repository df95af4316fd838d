"""Per-frame and per-utterance audio features read through a frozen Audio2Lip encoder.

One definition for training (:mod:`edtalk.data.sequence_datasets`) and generation
(:mod:`edtalk.pipelines.audio_drivers`): the audio-to-pose flow (docs/design.md §8.5) reads per-frame
embeddings (optionally with each frame's log-RMS), the audio/text-to-expression predictor (§8.6)
their time mean ‖ std.
"""
from __future__ import annotations

import numpy as np
import torch

from .audio import frame_log_rms

__all__ = ["EMBED_BATCH", "audio_embeddings", "utterance_features", "with_energy"]

EMBED_BATCH = 256  # mel windows per encoder call


@torch.no_grad()
def audio_embeddings(audio2lip, mels) -> torch.Tensor:
    """[T,512] float32 embeddings of per-frame mel windows [T,80,16] or [T,1,80,16]."""
    mels = torch.as_tensor(np.asarray(mels) if not isinstance(mels, torch.Tensor) else mels)
    if mels.dim() == 3:
        mels = mels[:, None]
    param = next(audio2lip.parameters())
    chunks = [audio2lip.embed(mels[s:s + EMBED_BATCH].to(param.device, param.dtype)).float().cpu()
              for s in range(0, len(mels), EMBED_BATCH)]
    return torch.cat(chunks)


def utterance_features(embeddings: torch.Tensor) -> torch.Tensor:
    """The offline utterance feature (docs/design.md §8.6): time mean ‖ std of [T,512] embeddings → [1024]."""
    e = torch.as_tensor(embeddings).float()
    return torch.cat([e.mean(0), e.std(0, unbiased=False)])


def with_energy(embeddings: torch.Tensor, wav: np.ndarray) -> torch.Tensor:
    """[T,D] per-frame embeddings + one column, the frame's log-RMS (:func:`edtalk.audio.frame_log_rms`)
    → [T,D+1]: the pose flow's optional energy input, added the same way in training and generation."""
    energy = torch.from_numpy(frame_log_rms(wav))
    n = min(len(embeddings), len(energy))
    return torch.cat([embeddings[:n], energy[:n, None].to(embeddings.dtype)], dim=1)
