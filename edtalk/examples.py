"""Bundled example inputs, regenerated from public-domain material (see examples/README.md).

- source.png       256² template crop (§7.1) of `skimage.data.astronaut()` (NASA, public domain)
- source_full.png  the uncropped astronaut photo, to demo automatic cropping
- pose.mp4         3 s, 25 fps, no audio: the head gently turning and nodding (small smooth
                   similarity warps of the aligned face; a synthetic pose driver)
- speech.wav       16 kHz mono, ~3 s: espeak-ng speech if installed, else a deterministic
                   speech-like synthesis (voiced pulses through formant filters)

Run `edtalk examples` to rebuild them.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
POSE_SECONDS = 3.0
SPEECH_TEXT = "Hello! This talking head was made with ED Talk."  # ~3.2 s at 150 wpm


def source_full() -> np.ndarray:
    """The astronaut photo (Eileen Collins, NASA; public domain), RGB uint8 [512,512,3]."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def source_crop() -> Tuple[np.ndarray, object]:
    """(256² template crop of the astronaut, its TemplateCrop params)."""
    from .face import crop_image

    return crop_image(source_full())


def _motion(t: np.ndarray) -> np.ndarray:
    """Smooth head motion for times t (s): rows of (angle rad, dx px, dy px, log-scale)."""
    w = 2 * np.pi / POSE_SECONDS  # one full period over the clip, so it loops
    angle = np.deg2rad(6.0) * np.sin(w * t)  # roll, side to side
    dx = 6.0 * np.sin(w * t)  # the head drifts with the roll: reads as turning
    dy = 5.0 * np.sin(2 * w * t)  # two nods
    log_scale = 0.03 * np.sin(2 * w * t + 0.5)  # slight approach/retreat with the nods
    return np.stack([angle, dx, dy, log_scale], axis=1)


def pose_frames(num_frames: int = int(POSE_SECONDS * FPS), size: int = 256) -> np.ndarray:
    """A synthetic pose clip [T,size,size,3]: the aligned face under small smooth similarity warps.

    Each frame re-samples the full photo (template transform ∘ motion), so no black borders appear.
    """
    from .face import warp_to_template

    image = source_full()
    _, params = source_crop()
    centre = np.array([128.0, 150.0])  # pivot near the neck/chin, like a real nod
    frames = []
    for angle, dx, dy, log_s in _motion(np.arange(num_frames) / FPS):
        s = np.exp(log_s)
        c, n = np.cos(angle), np.sin(angle)
        # Output pixel p samples the template at centre + R·(p − centre)/s − shift.
        rot = np.array([[c, -n], [n, c]]) / s
        motion = np.eye(3)
        motion[:2, :2] = rot
        motion[:2, 2] = centre - rot @ centre - np.array([dx, dy])
        frames.append(warp_to_template(image, params.matrix @ motion, 256))
    frames = np.stack(frames)
    if size != 256:
        from .face.tube import resize_crops

        frames = resize_crops(list(frames), size)
    return frames


def synth_speech(seconds: float = 3.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like audio (float32 in [-1,1]): a glottal pulse train with a falling
    pitch contour, through vowel formant resonators, gated by a ~4 Hz syllable envelope, with
    short noise bursts for consonants."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    # Pitch: a falling declination per phrase plus slow vibrato-like drift.
    f0 = 190.0 - 30.0 * (t % 1.5) / 1.5 + 8.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # 1 at each glottal closure
    source = lfilter([1.0], [1.0, -0.97], pulses)  # glottal spectral tilt

    vowels = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                       [570, 840, 2410], [300, 870, 2240]], dtype=np.float64)  # a e i o u
    syll_len = int(0.24 * sample_rate)
    out = np.zeros(n)
    for k, start in enumerate(range(0, n, syll_len)):
        seg = slice(start, min(n, start + syll_len))
        length = seg.stop - seg.start
        formants = vowels[rng.integers(len(vowels))]
        voiced = source[seg]
        y = np.zeros(length)
        for f, bw in zip(formants, (80.0, 90.0, 120.0)):  # parallel 2-pole resonators
            r = np.exp(-np.pi * bw / sample_rate)
            a = [1.0, -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r]
            y += lfilter([1.0 - r], a, voiced)
        env = np.sin(np.pi * np.linspace(0, 1, length)) ** 1.5  # syllable-rate amplitude
        burst = np.zeros(length)
        b = min(length, int(0.03 * sample_rate))
        burst[:b] = rng.standard_normal(b) * np.linspace(1, 0, b) * 0.3  # consonant onset
        gap = 1.0 if (k % 5) != 4 else 0.0  # a pause every fifth syllable
        out[seg] = gap * (y * env + burst)
    fade = min(n, int(0.02 * sample_rate))
    out[:fade] *= np.linspace(0, 1, fade)
    out[n - fade:] *= np.linspace(1, 0, fade)
    return (0.8 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def trim_silence(x: np.ndarray, sample_rate: int, threshold: float = 0.02, margin: float = 0.1) -> np.ndarray:
    """Cut leading/trailing silence, keeping `margin` seconds around the voiced span."""
    loud = np.nonzero(np.abs(x) > threshold * (np.abs(x).max() + 1e-12))[0]
    if len(loud) == 0:
        return x
    pad = int(margin * sample_rate)
    return x[max(0, loud[0] - pad): loud[-1] + 1 + pad]


def espeak_speech(text: str = SPEECH_TEXT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech from the `espeak-ng` program, resampled to `sample_rate` (float32 mono)."""
    from math import gcd

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        rate, pcm = wavfile.read(wav)
    x = pcm.astype(np.float64) / 32768.0
    if x.ndim > 1:
        x = x.mean(axis=1)
    g = gcd(int(rate), sample_rate)
    x = trim_silence(resample_poly(x, sample_rate // g, int(rate) // g), sample_rate)
    return (0.8 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def speech_audio(engine: str = "auto") -> Tuple[np.ndarray, str]:
    """(16 kHz mono float32 speech, engine used): "espeak" (espeak-ng), "synth", or "auto"."""
    if engine not in ("auto", "espeak", "synth"):
        raise ValueError(f"engine must be 'auto', 'espeak' or 'synth', got {engine!r}")
    if engine in ("auto", "espeak"):
        try:
            return espeak_speech(), "espeak"
        except (FileNotFoundError, subprocess.CalledProcessError):
            if engine == "espeak":
                raise
    return synth_speech(), "synth"


def make_examples(out_dir="examples", engine: str = "auto") -> Dict[str, Path]:
    """Write source.png, source_full.png, pose.mp4 and speech.wav into `out_dir`."""
    from PIL import Image
    from scipy.io import wavfile

    from .video import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("source.png", "source_full.png", "pose.mp4", "speech.wav")}
    Image.fromarray(source_crop()[0]).save(paths["source.png"], optimize=True)
    Image.fromarray(source_full()).save(paths["source_full.png"], optimize=True)
    write_video(paths["pose.mp4"], pose_frames(), fps=FPS, crf=23)
    audio, used = speech_audio(engine)
    wavfile.write(paths["speech.wav"], SAMPLE_RATE, np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
    paths["engine"] = used
    return paths
