"""Audio front end: loading, the Wav2Lip mel recipe, per-frame windows, mouth-weight smoothing.

Everything here follows docs/design.md §6 (mel spectrogram and per-frame windows) and §5.3 (smoothing).
Video runs at 25 fps and audio at 16 kHz, so one video frame is 640 samples.
"""

from __future__ import annotations

import os
import subprocess
from math import gcd
from typing import Union

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from edtalk.errors import InputError

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

# Wav2Lip hparams (docs/design.md §6.1).
N_FFT = 800
HOP = 200
WIN = 800
NUM_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
WINDOW_ROWS = 16  # mel rows per video frame window (~0.2 s)
MEL_FPS = 80  # mel rows per second = SAMPLE_RATE / HOP

SILENCE_THRESHOLD = 1e-6
SMOOTH_KERNEL = np.array([0.27406862, 0.45186276, 0.27406862])

# soundfile decodes these natively; everything else goes through ffmpeg.
_SOUNDFILE_EXTS = {".wav", ".flac", ".ogg"}

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------- loading


def frame_count(num_samples: int) -> int:
    """Number of 25 fps video frames covered by `num_samples` samples at 16 kHz."""
    return int(num_samples) // SAMPLES_PER_FRAME


def load_audio(path_or_array: AudioInput, sample_rate: int | None = None) -> np.ndarray:
    """Load audio as float32 mono at 16 kHz.

    Accepts a file path (WAV/FLAC/OGG via soundfile, any other format via the bundled ffmpeg)
    or an array: 1-D, [N, C] or [C, N] (channels are averaged). For arrays, `sample_rate` is
    their rate (16 kHz when None). Raises InputError for missing, undecodable, empty, or
    shorter-than-one-frame audio.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        wav, sr = _read_file(os.fspath(path_or_array))
        source = os.fspath(path_or_array)
    else:
        wav, sr = _as_mono_array(path_or_array), sample_rate or SAMPLE_RATE
        source = "audio array"
    if wav.size == 0:
        raise InputError(f"{source}: audio is empty (zero samples)")
    wav = _resample(wav, sr, SAMPLE_RATE).astype(np.float32)
    if wav.size < SAMPLES_PER_FRAME:
        raise InputError(
            f"{source}: audio is {wav.size / SAMPLE_RATE * 1000:.1f} ms long, shorter than one "
            f"video frame ({SAMPLES_PER_FRAME} samples = {1000 // FPS} ms at {SAMPLE_RATE} Hz)"
        )
    return wav


def check_audio(wav: np.ndarray, source: str = "audio") -> None:
    """Raise InputError if `wav` is silent (every |x| below 1e-6): it would drive no mouth motion."""
    if wav.size == 0 or float(np.max(np.abs(wav))) < SILENCE_THRESHOLD:
        raise InputError(f"{source}: audio is silent (all samples below {SILENCE_THRESHOLD:g})")


def _read_file(path: str) -> tuple[np.ndarray, int]:
    if not os.path.isfile(path):
        raise InputError(f"audio file not found: {path}")
    if os.path.splitext(path)[1].lower() in _SOUNDFILE_EXTS:
        try:
            data, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types for corrupt files
            raise InputError(f"cannot read audio file {path}: {exc}") from None
        return data.mean(axis=1), int(sr)
    return _decode_with_ffmpeg(path), SAMPLE_RATE


def _decode_with_ffmpeg(path: str) -> np.ndarray:
    """Decode any container/codec ffmpeg knows to 16 kHz mono float32 (raw f32le on a pipe)."""
    from .video import ffmpeg_exe, probe_video  # deferred: only needed for non-soundfile formats

    cmd = [
        ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path,
        "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        try:
            has_audio = probe_video(path)["audio"]
        except InputError:
            has_audio = True  # unreadable altogether: report ffmpeg's reason below
        if not has_audio:
            raise InputError(f"{path} has no audio track")
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = reason[-1] if reason else f"ffmpeg exit code {proc.returncode}"
        raise InputError(f"cannot decode audio from {path}: {reason}")
    usable = len(proc.stdout) // 4 * 4
    return np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)


def _as_mono_array(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    wav = np.asarray(audio, dtype=np.float64)
    if wav.ndim == 1:
        return wav
    if wav.ndim != 2:
        raise InputError(f"audio array must be 1-D or 2-D, got shape {wav.shape}")
    # Channels are the short axis: [N, C] or [C, N].
    channel_axis = 1 if wav.shape[0] >= wav.shape[1] else 0
    return wav.mean(axis=channel_axis)


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in <= 0:
        raise InputError(f"invalid sample rate {sr_in}")
    if sr_in == sr_out:
        return wav
    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(wav, sr_out // g, int(sr_in) // g)


# --------------------------------------------------------------------------- mel (§6.1)


def _hz_to_slaney_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    linear = 3.0 * f / 200.0
    log = 15.0 + 27.0 * np.log(np.maximum(f, 1e-10) / 1000.0) / np.log(6.4)
    return np.where(f < 1000.0, linear, log)


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    linear = 200.0 * m / 3.0
    log = 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0)
    return np.where(m < 15.0, linear, log)


def mel_filterbank() -> np.ndarray:
    """80 Slaney-normalised triangular filters over 55–7600 Hz on the 401 STFT bins: [80, 401]."""
    bin_hz = np.arange(N_FFT // 2 + 1) * (SAMPLE_RATE / N_FFT)  # 20 Hz steps
    mel_points = np.linspace(_hz_to_slaney_mel(FMIN), _hz_to_slaney_mel(FMAX), NUM_MELS + 2)
    hz_points = _slaney_mel_to_hz(mel_points)
    lower, centre, upper = hz_points[:-2, None], hz_points[1:-1, None], hz_points[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each filter has unit area in Hz.
    return triangles * (2.0 / (upper - lower))


STFT_BLOCK = 1024  # STFT frames per block: memory stays flat for long audio (each frame is independent)


def _mel_magnitude(y: np.ndarray) -> np.ndarray:
    """Mel filterbank of |STFT| (periodic Hann, centre=True, reflect padding): [80, frames].

    Computed a block of frames at a time (same numbers: every frame and every mel bin is computed
    on its own), so a minute of audio needs a few MB instead of ~100 MB of framed copies.
    """
    padded = np.pad(y, N_FFT // 2, mode="reflect")
    n_frames = 1 + (padded.size - N_FFT) // HOP
    window, bank = stft_window(), mel_filterbank()
    out = np.empty((NUM_MELS, n_frames))
    for start in range(0, n_frames, STFT_BLOCK):
        frames = np.arange(start, min(n_frames, start + STFT_BLOCK))
        out[:, frames] = mel_magnitude_rows(padded, frames, window, bank)
    return out


def stft_window() -> np.ndarray:
    """The periodic Hann window of the STFT: [WIN]."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)


def mel_magnitude_rows(padded: np.ndarray, frames: np.ndarray, window: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Mel filterbank of |STFT| at STFT frames `frames` of a padded pre-emphasised signal (frame f
    starts at sample HOP·f of `padded`): [80, len(frames)]. Shared with :class:`edtalk.audio_stream.MelStream`."""
    idx = np.arange(N_FFT)[None, :] + HOP * np.asarray(frames)[:, None]
    return bank @ np.abs(np.fft.rfft(padded[idx] * window, axis=1)).T


def normalized_db(mel: np.ndarray) -> np.ndarray:
    """Mel magnitudes [80, rows] → the Wav2Lip normalised log scale, [rows, 80] float32 in [-4, 4]."""
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = 2 * MAX_ABS * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS
    return np.clip(norm, -MAX_ABS, MAX_ABS).T.astype(np.float32)


def mel_spectrogram(wav_16k: np.ndarray) -> np.ndarray:
    """Wav2Lip mel spectrogram of 16 kHz mono audio: [N_mel, 80] float32 in [-4, 4].

    The waveform is first cropped or zero-padded to 640·T samples, T = N // 640, so that
    N_mel = 1 + 640·T / 200.
    """
    x = np.asarray(wav_16k, dtype=np.float64).reshape(-1)
    n = frame_count(x.size) * SAMPLES_PER_FRAME
    x = x[:n]  # crop; N // 640 frames never need padding
    if x.size == 0:
        raise InputError("audio is shorter than one video frame (640 samples at 16 kHz)")
    y = np.empty_like(x)
    y[0] = x[0]
    y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return normalized_db(_mel_magnitude(y))


# --------------------------------------------------------------------------- windows (§6.2)


def window_start(frame: int) -> int:
    """First mel row of frame `frame`'s window: trunc(80·(i−2)/25), truncating toward zero."""
    return int((MEL_FPS * (frame - 2)) / FPS)


def mel_windows(wav_path_or_array: AudioInput, sample_rate: int | None = None) -> torch.Tensor:
    """Per-video-frame mel windows for Audio2Lip: [T, 1, 80, 16] float32, T = N_16k // 640."""
    wav = load_audio(wav_path_or_array, sample_rate)
    is_path = isinstance(wav_path_or_array, (str, os.PathLike))
    check_audio(wav, os.fspath(wav_path_or_array) if is_path else "audio array")
    mel = mel_spectrogram(wav)
    n_frames = frame_count(wav.size)
    starts = np.array([window_start(i) for i in range(n_frames)])
    rows = np.clip(starts[:, None] + np.arange(WINDOW_ROWS)[None, :], 0, mel.shape[0] - 1)
    windows = mel[rows].transpose(0, 2, 1)  # [T, 16, 80] -> [T, 80, 16]
    return torch.from_numpy(np.ascontiguousarray(windows)).unsqueeze(1)


def frame_log_rms(wav_16k: np.ndarray) -> np.ndarray:
    """log10 of each video frame's RMS (640 samples, + 1e-4 so silence stays finite): [T] float32,
    T = N // 640 like :func:`mel_windows` (the pose flow's optional energy input, docs/design.md §8.5)."""
    x = np.asarray(wav_16k, dtype=np.float64).reshape(-1)
    frames = x[:frame_count(x.size) * SAMPLES_PER_FRAME].reshape(-1, SAMPLES_PER_FRAME)
    return np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-4).astype(np.float32)


# --------------------------------------------------------------------------- smoothing (§5.3)


def smooth(weights, mode: str | None = "edge"):
    """3-tap Gaussian along time (dim 0) of [T, D] mouth weights; returns the input's type.

    mode "official" zero-pads (parity: end frames shrink), "edge" replicates the end frames
    (product default), None / "none" returns the input unchanged.
    """
    if mode is None or mode == "none":
        return weights
    if mode not in ("official", "edge"):
        raise ValueError(f"unknown smoothing mode {mode!r}; expected 'edge', 'official' or None")
    is_tensor = isinstance(weights, torch.Tensor)
    x = weights.detach().cpu().numpy() if is_tensor else np.asarray(weights)
    pad_mode = "constant" if mode == "official" else "edge"
    padded = np.pad(x.astype(np.float64), [(1, 1)] + [(0, 0)] * (x.ndim - 1), mode=pad_mode)
    k = SMOOTH_KERNEL
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    out = (k[0] * padded[:-2] + k[1] * padded[1:-1] + k[2] * padded[2:]).astype(out_dtype)
    if is_tensor:
        return torch.from_numpy(out).to(device=weights.device)
    return out
