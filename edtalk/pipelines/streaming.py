"""Frames from a growing audio source: `EDTalkPipeline.stream(source, audio=<iterator of PCM chunks>)`.

The mouth follows the speech as it arrives: each chunk is resampled to 16 kHz (when given at another
rate), cut into the per-frame mel windows that are final, read by Audio2Lip and smoothed
(:mod:`edtalk.audio_stream`: the same numbers as on the whole recording). A batch of frames is
rendered once `batch_size` frames have their mouth weights — the same batches as a call on the
whole recording — and the last, shorter batch when the source ends.

Look-ahead: frame i is made once the audio through frame i + LOOKAHEAD_FRAMES is in (4 frames,
160 ms with the default smoothing: 3 for the mel window, 1 for the 3-tap smoothing; 3 with
smoothing "none"); under 1 ms more when the chunks need resampling.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..audio_stream import (SMOOTHING_LOOKAHEAD_FRAMES, WINDOW_LOOKAHEAD_FRAMES, MelStream, StreamResampler,
                            StreamSmoother, frame_ms, pcm_samples)
from .engine import Generator

__all__ = ["LOOKAHEAD_FRAMES", "LOOKAHEAD_MS", "lookahead_frames", "is_growing_audio", "MouthStream",
           "growing_batches"]


def lookahead_frames(smoothing: str = "edge") -> int:
    """Frames of audio past frame i that must be in before frame i is made."""
    return WINDOW_LOOKAHEAD_FRAMES + SMOOTHING_LOOKAHEAD_FRAMES[smoothing]


LOOKAHEAD_FRAMES = lookahead_frames("edge")  # the default smoothing's: 4 frames
LOOKAHEAD_MS = frame_ms(LOOKAHEAD_FRAMES)  # 160.0


def is_growing_audio(audio) -> bool:
    """A growing audio source: an iterator (or generator) of PCM chunks."""
    return isinstance(audio, Iterator)


class MouthStream:
    """Smoothed mouth weights [n,20] of PCM chunks at `sample_rate` Hz, given as they become final:
    frame i once the audio through frame i + lookahead_frames(smoothing) is in."""

    def __init__(self, generator: Generator, smoothing: str = "edge", sample_rate: int = SAMPLE_RATE):
        self.generator = generator
        self.resampler = StreamResampler(sample_rate)
        self.mel = MelStream()
        self.smoother = StreamSmoother(smoothing)
        self.lookahead = lookahead_frames(smoothing)

    def push(self, chunk) -> torch.Tensor:
        return self.smoother.push(self._lips(self.mel.push(self._samples(self.resampler.push(pcm_samples(chunk))))))

    def finish(self) -> torch.Tensor:
        tail = self.mel.push(self._samples(self.resampler.finish()))
        raw = self._lips(torch.cat([tail, self.mel.finish()]))
        return torch.cat([self.smoother.push(raw), self.smoother.finish()])

    @staticmethod
    def _samples(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)  # 16 kHz samples are float32, as edtalk.audio.load_audio gives them

    def _lips(self, windows: torch.Tensor) -> torch.Tensor:
        return self.generator.lip_weights(windows)


def growing_batches(gen: Generator, latent, feats, mouths: MouthStream, chunks: Iterator,
                    drivers_for: Callable, paste=None):
    """(float frames [b,3,H,W], paste) as the audio arrives. `drivers_for(first, mouth)`: the
    drivers of output frames first.. with mouth weights `mouth` [b,20]. Chunks are read only as
    far as the next batch needs."""
    with torch.inference_mode():
        prepared = gen.model.prepare_source(feats)
    pending, done, ended = [], 0, False
    while True:
        while sum(len(m) for m in pending) < gen.batch_size and not ended:
            try:
                chunk = next(chunks)
            except StopIteration:
                ended = True
                pending.append(mouths.finish())
            else:
                pending.append(mouths.push(chunk))
        pending = [m for m in pending if len(m)]
        if not pending:
            return
        mouth = torch.cat(pending)
        batch, pending = mouth[:gen.batch_size], [mouth[gen.batch_size:]]
        frames = gen.render_slice(latent, prepared, drivers_for(done, batch), slice(0, len(batch)))
        done += len(batch)
        yield frames, paste
