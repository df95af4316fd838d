"""The audio front end on a growing source: PCM chunks in, per-frame mel windows and smoothed mouth
weights out as soon as they are final.

Each piece gives exactly what :mod:`edtalk.audio` gives on the whole recording (the same samples,
mel rows, windows and smoothing), only earlier:

- :func:`pcm_samples`: one chunk (float in [-1,1], or int16/int32 PCM; mono, or [n, channels]) as
  float64 mono samples;
- :class:`StreamResampler`: `scipy.signal.resample_poly` (what :func:`edtalk.audio.load_audio` uses
  for arrays) computed piece by piece;
- :class:`MelStream`: the Wav2Lip mel spectrogram and per-frame windows (docs/design.md §6);
- :class:`StreamSmoother`: the 3-tap smoothing of :func:`edtalk.audio.smooth`.

The look-ahead, derived below from the mel recipe: frame i's window reaches WINDOW_ROWS−1 rows past
its start, and each row's STFT frame N_FFT/2 samples past its centre, so frame i's window is final
once the audio through frame i + WINDOW_LOOKAHEAD_FRAMES has arrived (3 frames, 120 ms, on the 40 ms
frame grid; at most WINDOW_LOOKAHEAD_SAMPLES = 1560 samples, 97.5 ms, past the frame's own end).
Smoothing reads the next frame too (SMOOTHING_LOOKAHEAD_FRAMES).
"""
from __future__ import annotations

from math import gcd
from typing import Optional

import numpy as np
import torch

from .audio import (FPS, HOP, MEL_FPS, N_FFT, PREEMPHASIS, SAMPLE_RATE, SAMPLES_PER_FRAME, WINDOW_ROWS,
                    mel_filterbank, mel_magnitude_rows, normalized_db, smooth, stft_window, window_start)
from .errors import InputError

__all__ = ["WINDOW_LOOKAHEAD_SAMPLES", "WINDOW_LOOKAHEAD_FRAMES", "SMOOTHING_LOOKAHEAD_FRAMES", "pcm_samples",
           "StreamResampler", "MelStream", "StreamSmoother", "frame_ms"]


def _window_end_sample(frame: int) -> int:
    """One past the last 16 kHz sample frame `frame`'s mel window reads (its last row's STFT frame
    is centred on HOP·row and reaches N_FFT/2 beyond)."""
    return HOP * (window_start(frame) + WINDOW_ROWS - 1) + N_FFT // 2


# Windows start every MEL_FPS/FPS = 3.2 rows: the pattern repeats every 5 frames; the first two frames
# (whose windows start before the audio) are included in the range.
_PERIOD = MEL_FPS // gcd(MEL_FPS, FPS) * 5
WINDOW_LOOKAHEAD_SAMPLES = max(_window_end_sample(i) - (i + 1) * SAMPLES_PER_FRAME for i in range(_PERIOD))
WINDOW_LOOKAHEAD_FRAMES = max(-(-_window_end_sample(i) // SAMPLES_PER_FRAME) - (i + 1) for i in range(_PERIOD))
SMOOTHING_LOOKAHEAD_FRAMES = {"edge": 1, "official": 1, "none": 0}  # the 3-tap kernel reads the next frame


def frame_ms(frames: int) -> float:
    """Milliseconds of `frames` video frames."""
    return 1000.0 * frames / FPS


def pcm_samples(chunk) -> np.ndarray:
    """One chunk of PCM as float64 mono: float samples in [-1,1] as they are, int16/int32 scaled by
    2^15/2^31; 1-D mono, or [n, channels] (channels averaged)."""
    if isinstance(chunk, torch.Tensor):
        chunk = chunk.detach().cpu().numpy()
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        raise InputError("audio chunks are numpy arrays of samples (np.frombuffer(data, np.int16) for raw PCM), "
                         "not bytes", field="audio", plain="audio chunks are arrays of samples, not bytes")
    array = np.asarray(chunk)
    if array.dtype == np.int16:
        samples = array.astype(np.float64) / 32768.0
    elif array.dtype == np.int32:
        samples = array.astype(np.float64) / 2147483648.0
    elif np.issubdtype(array.dtype, np.floating):
        samples = array.astype(np.float64)
    else:
        raise InputError(f"audio chunks must be float, int16 or int32 samples, got {array.dtype}", field="audio",
                         plain=f"audio chunks must be float, int16 or int32 samples, got {array.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise InputError(f"an audio chunk must be [n] (mono) or [n, channels], got shape {array.shape}",
                         field="audio", plain=f"an audio chunk must be [n] or [n, channels], got {array.shape}")
    return samples


class StreamResampler:
    """`scipy.signal.resample_poly(x, up, down)` (Kaiser-windowed FIR, β 5), computed chunk by chunk:
    the samples out are those of resampling the whole recording at once (each output sample is
    given once every input sample its filter reaches is in; `finish` gives the tail)."""

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE):
        from scipy.signal import firwin

        if int(rate_in) != rate_in or rate_in <= 0:
            raise InputError(f"sample_rate must be a positive whole number of Hz, got {rate_in!r}",
                             field="sample_rate", plain=f"must be a positive whole number of Hz, got {rate_in!r}")
        g = gcd(int(rate_in), int(rate_out))
        self.up, self.down = int(rate_out) // g, int(rate_in) // g
        self.taken = 0  # input samples in
        if self.up == self.down:  # nothing to do
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        pre_pad = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre_pad), h])  # trailing zeros (resample_poly's post-pad) add nothing
        self.skip = (half_len + pre_pad) // self.down  # leading outputs resample_poly drops
        self.buffer = np.zeros(0)
        self.start = 0  # input index of buffer[0] (a multiple of `down`)
        self.given = 0  # output samples out

    def _upfirdn_index(self, n: int) -> int:
        return n + self.skip

    def _first_input(self, n: int) -> int:
        """Lowest input index output `n` reads."""
        k = self._upfirdn_index(n) * self.down - (len(self.h) - 1)
        return max(0, -(-k // self.up))

    def _outputs(self, stop: int) -> np.ndarray:
        from scipy.signal import upfirdn

        if stop <= self.given:
            return np.zeros(0)
        z = upfirdn(self.h, self.buffer, self.up, self.down)
        offset = self.start * self.up // self.down  # z[j] is the whole recording's upfirdn output j + offset
        out = z[self._upfirdn_index(self.given) - offset:self._upfirdn_index(stop) - offset]
        self.given = stop
        keep = min(self._first_input(self.given), self.taken) // self.down * self.down
        self.buffer, self.start = self.buffer[keep - self.start:], keep
        return out

    def push(self, samples: np.ndarray) -> np.ndarray:
        self.taken += len(samples)
        if self.up == self.down:
            return samples
        self.buffer = np.concatenate([self.buffer, samples])
        # Output m reads inputs up to (m + skip)·down // up: those all in give m ≤ stop − 1.
        return self._outputs(max(self.given, (self.taken * self.up - 1) // self.down - self.skip + 1))

    def finish(self) -> np.ndarray:
        if self.up == self.down:
            return np.zeros(0)
        total = -(-self.taken * self.up // self.down)  # resample_poly's output length
        # The whole recording's filter reads zeros past its end: give the buffer them (generously).
        self.buffer = np.concatenate([self.buffer, np.zeros(len(self.h) // self.up + 2 * self.down + 2)])
        return self._outputs(total)


class MelStream:
    """Per-frame mel windows [n,1,80,16] of 16 kHz audio that grows by `push`: frame i comes out once
    the audio through frame i + WINDOW_LOOKAHEAD_FRAMES is in, equal to
    :func:`edtalk.audio.mel_windows` of the whole recording; `finish` gives the last frames (whose
    windows reach the end, reflected as the whole-recording spectrogram does)."""

    def __init__(self):
        self.window, self.bank = stft_window(), mel_filterbank()
        self.samples = 0  # 16 kHz samples in
        self.frames = 0  # windows out
        self._last = None  # the last sample, for pre-emphasis across chunks
        self._y = np.zeros(0)  # pre-emphasised samples from index _y0
        self._y0 = 0
        self._mel = np.zeros((0, 80), np.float32)  # normalised mel rows from row _row0
        self._row0 = 0
        self._rows = 0  # rows computed

    def push(self, samples: np.ndarray) -> torch.Tensor:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if x.size:
            y = np.empty_like(x)
            y[0] = x[0] if self._last is None else x[0] - PREEMPHASIS * self._last
            y[1:] = x[1:] - PREEMPHASIS * x[:-1]
            self._y = np.concatenate([self._y, y])
            self._last, self.samples = x[-1], self.samples + x.size
        return self._windows(max(0, self.samples // SAMPLES_PER_FRAME - WINDOW_LOOKAHEAD_FRAMES), end=None)

    def finish(self) -> torch.Tensor:
        """The remaining windows: the recording ends at its last whole frame (as mel_spectrogram crops)."""
        frames = self.samples // SAMPLES_PER_FRAME
        if frames == 0:
            raise InputError(f"the audio stream ended after {self.samples} samples, shorter than one video frame "
                             f"({SAMPLES_PER_FRAME} samples at {SAMPLE_RATE} Hz)", field="audio",
                             plain="the audio ended before one video frame (40 ms)")
        return self._windows(frames, end=frames * SAMPLES_PER_FRAME)

    def _windows(self, stop: int, end: Optional[int]) -> torch.Tensor:
        """Windows of frames self.frames..stop-1; `end`: the recording's last sample (None: still growing)."""
        if stop <= self.frames:
            return torch.zeros(0, 1, 80, WINDOW_ROWS)
        last_row = None if end is None else end // HOP  # the whole recording's last mel row
        starts = np.array([window_start(i) for i in range(self.frames, stop)])
        rows = np.maximum(starts[:, None] + np.arange(WINDOW_ROWS)[None, :], 0)
        if last_row is not None:
            rows = np.minimum(rows, last_row)
        self._compute_rows(int(rows.max()), end)
        windows = self._mel[rows - self._row0].transpose(0, 2, 1)  # [n,16,80] -> [n,80,16]
        self.frames = stop
        self._forget()
        return torch.from_numpy(np.ascontiguousarray(windows)).unsqueeze(1)

    def _compute_rows(self, last: int, end: Optional[int]) -> None:
        if last < self._rows:
            return
        first = self._rows
        # Samples of rows first..last, with the reflections np.pad(..., mode="reflect") makes at the ends.
        index = np.arange(HOP * first - N_FFT // 2, HOP * last + N_FFT // 2)
        index = np.abs(index)
        if end is not None:
            index = np.where(index >= end, 2 * (end - 1) - index, index)
        segment = self._y[index - self._y0]
        magnitude = mel_magnitude_rows(segment, np.arange(last - first + 1), self.window, self.bank)
        self._mel = np.concatenate([self._mel, normalized_db(magnitude)])
        self._rows = last + 1

    def _forget(self) -> None:
        """Drop the rows and samples no later window or row reads."""
        next_row = max(0, window_start(self.frames))
        drop = min(next_row, self._rows) - self._row0
        if drop > 0:
            self._mel, self._row0 = self._mel[drop:], self._row0 + drop
        keep_from = max(0, HOP * self._rows - N_FFT // 2)  # the next row's first sample (rows ≥ 2 reflect none)
        if keep_from > self._y0:
            self._y, self._y0 = self._y[keep_from - self._y0:], keep_from


class StreamSmoother:
    """:func:`edtalk.audio.smooth` along time on weights that grow by `push`: row i comes out once
    row i+1 is in (`finish` gives the last row, padded as the whole sequence is)."""

    def __init__(self, mode: str = "edge"):
        self.mode = mode
        self.lookahead = SMOOTHING_LOOKAHEAD_FRAMES[mode]
        self._raw = None  # rows not given yet, after the last one given (the kernel reads it)
        self._given = 0  # rows out
        self._seen = 0  # rows in

    def push(self, raw: torch.Tensor) -> torch.Tensor:
        if self.lookahead == 0:
            return raw
        self._raw = raw if self._raw is None else torch.cat([self._raw, raw])
        self._seen += len(raw)
        return self._take(self._seen - self.lookahead)

    def finish(self) -> torch.Tensor:
        if self.lookahead == 0 or self._raw is None:
            return self._raw[:0] if self._raw is not None else torch.zeros(0)
        return self._take(self._seen, end=True)

    def _take(self, stop: int, end: bool = False) -> torch.Tensor:
        """Rows given..stop-1. The buffer holds rows from `given` − 1 (or 0): smooth() of it is exact
        inside, and at the true start and (`end`) the true end it pads as the whole sequence does."""
        first = max(0, self._given - 1)  # the row self._raw[0] is
        if stop <= self._given:
            return self._raw[:0]
        out = smooth(self._raw, mode=self.mode)[self._given - first:stop - first]
        self._raw = self._raw[stop - 1 - first:] if not end else self._raw[:0]
        self._given = stop
        return out
