"""SynthTalk: procedural talking-head clips whose mouth, pose and expression are known.

Real datasets and released weights are not on every machine, yet every training stage and
metric must be exercised.  SynthTalk writes MEAD-style and HDTF-style trees in the exact layout of
:mod:`edtalk.data.layout` (25 fps MP4 with AAC audio, 16 kHz WAV with T·640 samples, 68-point
landmarks drawn through the same transform as the pixels, face boxes, mel windows) plus the
ground truth of every frame in ``factors/<name>.npz``, so "disentangled" becomes a number
(:mod:`edtalk.eval.disentangle`).

Factors (per frame; ranges are hard limits):

- mouth [T,3]: ``open`` [0,1] (jaw drop), ``width`` [-1,1] (spread/narrow), ``round`` [0,1]
  (pucker).  A syllable process: targets held 2–7 frames, short closures between syllables,
  pauses of 4–12 frames with the mouth closed, then Gaussian smoothing (σ 1.2 frames).
- pose [T,6]: ``yaw``, ``pitch``, ``roll`` (radians), ``tx``, ``ty`` (fraction of the frame),
  ``scale``: a clip-level offset plus smooth noise (σ 12 frames).
- expression [T,6]: ``brow_raise`` [-1,1], ``brow_furrow`` [0,1], ``eyelid`` [-1,1] (wide +, squint
  −), ``cheek`` [0,1], ``corner_curve`` [-1,1] (smile +, frown −), ``corner_asym`` [0,1] (one-sided
  smile, contempt): level/3 × :data:`EMOTION_VECTORS`[emotion] plus smooth jitter (std 0.08).
  HDTF-style videos have no label: a weak random emotion mixture that drifts.  With
  ``--exp-change P`` a non-neutral MEAD clip, with probability P, blends part-way (over 4–8
  frames) into another emotion/level of the tree; its per-frame factors follow the blend.
- blink [T] [0,1]: 1 = closed; one blink every 1.6–4.8 s.

Mouth, pose and expression are drawn from independent random streams, so across clips they are
statistically independent (identity too): a perfect extractor has no leakage to explain away.

Audio follows the mouth: loudness ∝ opening, F1 rises with opening, F2 with width and falls with
rounding (:func:`edtalk.data.synthtalk_render.synthesize_audio`), so audio→lip is learnable.  With
``--emotional-voice`` the MEAD clips' voices also carry their emotion (pitch, intonation depth,
spectral tilt, tremor, breath; :data:`edtalk.data.synthtalk_render.VOICE_EMOTIONS`), so audio→emotion
is learnable too; the loudness still follows the mouth alone.

Library::

    from edtalk.data import synthtalk
    clip = synthtalk.make_clip(synthtalk.sample_identity(rng), 50, size=64, rng=rng, emotion="happy", level=3)
    synthtalk.generate(out_dir, kind="both", size=64, seed=0)     # → {"mead": TreeReport, "hdtf": ...}
    truth, groups, names = synthtalk.load_factors(out_dir / "mead")

CLI (edtalk/cli.py)::

    edtalk synthtalk --out DIR [--kind mead|hdtf|both] [--size 64] [--seed 0]
        [--speakers 2] [--emotions all] [--levels 1,2,3] [--clips-per 1] [--frames 32|25-50]
        [--pose-drift 1] [--pose-range 1] [--exp-change 0] [--exp-scale 1] [--emotional-voice]
        [--turn-cues] [--videos 2] [--seconds 7] [--no-mel] [--overwrite] [--quiet]

``--turn-cues`` renders head turns as turns of a head (ears, the side of the head and the hair
behind it move against the face, and a frame-fixed light shades the turned face; see
:mod:`edtalk.data.synthtalk_render`): at 64² it lifts the yaw and pitch a network can read off a
frame (docs/factor_ceiling.md).  It changes no factor and no landmark, and frontal frames not at
all; it is off by default because the shipped models were trained on trees without it.

``--exp-scale S`` draws every expression S times larger (brows, lids, mouth corners, blush) and
keeps the expression values in the factors files.  At S = 1 a level-3 expression moves about as
many pixels as a half-open mouth, a few % of the frame, which a reconstruction loss barely sees.

Trees go to ``DIR/mead`` and ``DIR/hdtf``.  Same seed and options ⇒ identical bytes (one clip's
content depends only on the seed, the factor options ``--pose-drift/--pose-range/--exp-change``,
``--exp-scale``, ``--turn-cues`` and its own speaker/emotion/level/index, not on the other options; with ``--exp-change`` the
labels a clip may change to are the tree's, so ``--emotions``/``--levels`` matter too).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from edtalk.data import layout
from edtalk.data.synthtalk_render import (Identity, render_frames, sample_identity,
                                          synthesize_audio)
from edtalk.errors import InputError

__all__ = [
    "EMOTION_VECTORS", "LEVEL_SCALE", "MOUTH_NAMES", "POSE_NAMES", "EXPRESSION_NAMES", "Identity",
    "sample_identity", "sample_mouth", "sample_pose", "sample_expression", "sample_blinks", "sample_factors",
    "render_frames", "synthesize_audio", "face_boxes", "make_clip", "write_clip", "generate_mead",
    "generate_hdtf", "generate", "load_factors", "mel_available",
]

VERSION = 1
MOUTH_NAMES = ("open", "width", "round")
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "scale")
EXPRESSION_NAMES = ("brow_raise", "brow_furrow", "eyelid", "cheek", "corner_curve", "corner_asym")
EXPRESSION_LOW = np.array([-1.0, 0.0, -1.0, 0.0, -1.0, 0.0])
EXPRESSION_HIGH = np.ones(6)
POSE_LOW = np.array([-0.4, -0.3, -0.25, -0.08, -0.08, 0.85])
POSE_HIGH = np.array([0.4, 0.3, 0.25, 0.08, 0.08, 1.15])

EMOTION_VECTORS = {
    "angry": (-0.3, 1.0, 0.3, 0.0, -0.5, 0.0),
    "contempt": (0.0, 0.2, -0.2, 0.0, 0.0, 1.0),
    "disgusted": (-0.2, 0.7, -0.5, 0.7, -0.7, 0.0),
    "fear": (0.8, 0.6, 0.8, 0.0, -0.4, 0.0),
    "happy": (0.1, 0.0, -0.3, 1.0, 1.0, 0.0),
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "sad": (0.5, 0.5, -0.4, 0.0, -0.9, 0.0),
    "surprised": (1.0, 0.0, 1.0, 0.0, 0.0, 0.0),
}
EMOTION_VECTORS = {k: np.array(v) for k, v in EMOTION_VECTORS.items()}
LEVEL_SCALE = {1: 1.0 / 3.0, 2: 2.0 / 3.0, 3: 1.0}
_KIND_CODE = {"mead": 1, "hdtf": 2}


# --------------------------------------------------------------------------- factor sampling


def _smooth_noise(rng: np.random.Generator, T: int, dims: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise [T,dims] (σ in frames)."""
    pad = int(4 * sigma) + 1
    x = rng.standard_normal((T + 2 * pad, dims))
    y = gaussian_filter1d(x, sigma, axis=0, mode="nearest")[pad:pad + T]
    return y * np.sqrt(2.0 * np.sqrt(np.pi) * sigma)  # theoretical std of smoothed unit noise


def sample_mouth(rng: np.random.Generator, T: int) -> np.ndarray:
    """[T,3] open/width/round from a syllable process (see the module doc)."""
    target = np.zeros((T + 16, 3))
    t = 0
    while t < T + 16:
        if rng.random() < 0.18:  # pause, mouth closed
            d = int(rng.integers(4, 13))
            target[t:t + d] = (0.0, rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.3))
        else:
            d = int(rng.integers(2, 8))
            target[t:t + d] = (rng.uniform(0.15, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0))
            if rng.random() < 0.5:  # consonant closure
                c = int(rng.integers(1, 3))
                target[t + d:t + d + c, 0] = rng.uniform(0.0, 0.1)
                target[t + d:t + d + c, 1:] = target[t:t + 1, 1:]
                d += c
        t += d
    mouth = gaussian_filter1d(target, 1.2, axis=0, mode="nearest")[8:8 + T]
    return np.clip(mouth, [0.0, -1.0, 0.0], [1.0, 1.0, 1.0])


def sample_pose(rng: np.random.Generator, T: int, drift: float = 1.0, pose_range: float = 1.0) -> np.ndarray:
    """[T,6] yaw, pitch, roll, tx, ty, scale: clip offset + smooth drift (amplitude × `drift`).

    `pose_range` K widens the head motion *within* the clip: the deviations of yaw, pitch, roll,
    tx and ty from the clip's own mean pose are multiplied by K (scale is left alone), so their
    within-clip std grows by K on top of `drift` (the two multiply).  With K ≠ 1 the clip's mean
    pose is then moved inwards where needed so that the wider motion stays inside the factor
    limits instead of being cut off at them (it is cut only when the motion alone is wider than
    the limits).  K = 1 is the original sampler, draw for draw.  The random draws do not depend
    on K, so a clip keeps its mean pose and the shape of its motion across values of K.
    """
    if not np.isfinite(pose_range) or pose_range < 0:
        raise InputError(f"pose range must be a finite number ≥ 0, got {pose_range!r}")
    offset = rng.uniform([-0.2, -0.12, -0.1, -0.03, -0.03, 0.92], [0.2, 0.12, 0.1, 0.03, 0.03, 1.08])
    amp = np.array([0.12, 0.08, 0.06, 0.015, 0.015, 0.02]) * drift
    if pose_range == 1.0:
        return np.clip(offset + amp * _smooth_noise(rng, T, 6, 12.0), POSE_LOW, POSE_HIGH)
    motion = amp * _smooth_noise(rng, T, 6, 12.0)
    mean = motion.mean(0)
    motion[:, :5] = mean[:5] + pose_range * (motion[:, :5] - mean[:5])
    lo, hi = POSE_LOW - motion.min(0), POSE_HIGH - motion.max(0)  # offsets that keep the clip inside
    offset = np.where(lo <= hi, np.clip(offset, lo, np.maximum(lo, hi)), 0.5 * (lo + hi))
    return np.clip(offset + motion, POSE_LOW, POSE_HIGH)


def _check_label(emotion, level) -> None:
    if emotion not in EMOTION_VECTORS:
        raise InputError(f"unknown emotion {emotion!r}; expected one of {', '.join(layout.EMOTIONS)}")
    if level not in LEVEL_SCALE:
        raise InputError(f"level must be 1, 2 or 3, got {level!r}")


def sample_expression(rng: np.random.Generator, T: int, emotion: Optional[str] = None,
                      level: Optional[int] = None, change: Optional[tuple] = None) -> np.ndarray:
    """[T,6] expression: emotion vector × level/3 + smooth jitter; None = unlabelled drift (HDTF).

    `change` = (emotion2, level2, weight [T] in [0,1]) blends the base per frame towards a second
    label: base(t) = (1 − w_t)·vector(emotion, level) + w_t·vector(emotion2, level2) (labelled
    clips only); the jitter is drawn exactly as without it.
    """
    if emotion is None:
        name = layout.EMOTIONS[int(rng.integers(len(layout.EMOTIONS)))]
        base = EMOTION_VECTORS[name] * rng.uniform(0.0, 0.5)
        drift = 0.15 * _smooth_noise(rng, T, 6, 40.0)
    else:
        _check_label(emotion, level)
        base = EMOTION_VECTORS[emotion] * LEVEL_SCALE[level]
        if change is not None:
            emotion2, level2, weight = change
            _check_label(emotion2, level2)
            weight = np.asarray(weight, dtype=np.float64).reshape(T, 1)
            base = (1.0 - weight) * base + weight * (EMOTION_VECTORS[emotion2] * LEVEL_SCALE[level2])
        drift = 0.0
    jitter = 0.08 * _smooth_noise(rng, T, 6, 6.0)
    return np.clip(base + drift + jitter, EXPRESSION_LOW, EXPRESSION_HIGH)


_BLINK_PROFILE = np.array([0.3, 0.8, 1.0, 0.8, 0.4, 0.1])


def sample_blinks(rng: np.random.Generator, T: int) -> np.ndarray:
    """[T] eyelid closure in [0,1]; a blink lasts 6 frames, one every 40–120 frames."""
    blink = np.zeros(T)
    t = int(rng.integers(5, 60))
    while t < T:
        seg = _BLINK_PROFILE[: T - t]
        blink[t:t + len(seg)] = np.maximum(blink[t:t + len(seg)], seg)
        t += int(rng.integers(40, 121))
    return blink


def default_change_targets(emotion: str, level: int) -> list:
    """Every (emotion, level) of MEAD's label set (neutral at level 1 only) except (emotion, level)."""
    return [(e, lv) for e in layout.EMOTIONS for lv in ((1,) if e == "neutral" else layout.LEVELS)
            if (e, lv) != (emotion, level)]


def sample_change(rng: np.random.Generator, T: int, emotion: Optional[str], level: Optional[int],
                  rate: float, targets: Optional[Sequence[tuple]] = None) -> Optional[dict]:
    """With probability `rate`, an expression change for a labelled, non-neutral clip of T ≥ 4 frames:
    {"emotion", "level" (the label it changes to, from `targets`, default :func:`default_change_targets`),
    "start" (first frame of the transition), "frames" (its length, 4–8 frames, at most T/3),
    "weight" float32 [T] (0 before, smoothstep to 1 over the transition, 1 after)}; else None.
    Neutral clips never change (they are the neutral sources of stages 0 and 2)."""
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"expression change rate must be in [0, 1], got {rate!r}")
    u = rng.random()
    if emotion is None or emotion == "neutral" or T < 4 or u >= rate:
        return None
    pool = [tuple(t) for t in (targets if targets is not None else default_change_targets(emotion, level))
            if tuple(t) != (emotion, level)]
    if not pool:
        return None
    emotion2, level2 = pool[int(rng.integers(len(pool)))]
    frames = min(int(rng.integers(4, 9)), max(1, T // 3))
    lo = T // 4
    hi = max(lo, T - T // 4 - frames)
    start = int(rng.integers(lo, hi + 1))
    x = np.clip((np.arange(T) - start + 0.5) / frames, 0.0, 1.0)
    weight = (x * x * (3.0 - 2.0 * x)).astype(np.float32)
    return {"emotion": emotion2, "level": int(level2), "start": start, "frames": frames, "weight": weight}


def sample_factors(rng: np.random.Generator, T: int, emotion: Optional[str] = None,
                   level: Optional[int] = None, pose_drift: float = 1.0, pose_range: float = 1.0,
                   exp_change: float = 0.0, change_targets: Optional[Sequence[tuple]] = None) -> dict:
    """All per-frame factors of one clip; every group from its own child stream (independent).
    `pose_drift` scales the within-clip head motion (short clips barely move at 1); `pose_range`
    widens it around the clip's mean pose (:func:`sample_pose`).  `exp_change` is the probability
    that a labelled, non-neutral clip changes its expression part-way to another (emotion, level)
    of `change_targets` (:func:`sample_change`); the per-frame expression follows the change, and
    the dict then also holds "change" (that description, or None for a clip that does not change).
    The defaults draw exactly what they always drew."""
    if not 0.0 <= exp_change <= 1.0:
        raise InputError(f"expression change rate must be in [0, 1], got {exp_change!r}")
    r_mouth, r_pose, r_exp, r_blink = rng.spawn(4)
    change = None
    if exp_change > 0:  # a fifth child stream: the first four, and so the other factors, are unchanged
        change = sample_change(rng.spawn(1)[0], T, emotion, level, float(exp_change), change_targets)
    factors = {
        "mouth": sample_mouth(r_mouth, T).astype(np.float32),
        "pose": sample_pose(r_pose, T, pose_drift, pose_range).astype(np.float32),
        "expression": sample_expression(r_exp, T, emotion, level, None if change is None else
                                         (change["emotion"], change["level"], change["weight"])).astype(np.float32),
        "blink": sample_blinks(r_blink, T).astype(np.float32),
    }
    if exp_change > 0:
        factors["change"] = change
    return factors


# --------------------------------------------------------------------------- clips


def face_boxes(landmarks: np.ndarray, size: int) -> np.ndarray:
    """[T,4] int64 x1,y1,x2,y2 face boxes from pixel landmarks [T,68,2] (S3FD-like extent).

    x: landmark extent padded by 5 % of the width; y: from a quarter of the brow-to-chin height
    above the brows to 3 % below the chin; clipped to [0, size].
    """
    x_min, x_max = landmarks[..., 0].min(1), landmarks[..., 0].max(1)
    brow = landmarks[:, 17:27, 1].min(1)
    chin = landmarks[..., 1].max(1)
    pad = 0.05 * (x_max - x_min)
    h = chin - brow
    box = np.stack([x_min - pad, brow - 0.25 * h, x_max + pad, chin + 0.03 * h], 1)
    box = np.clip(np.round(box), 0, size).astype(np.int64)
    box[:, 2] = np.maximum(box[:, 2], box[:, 0] + 1)
    box[:, 3] = np.maximum(box[:, 3], box[:, 1] + 1)
    return box


def make_clip(ident: Identity, num_frames: int, size: int = 64, rng: Optional[np.random.Generator] = None,
              emotion: Optional[str] = None, level: Optional[int] = None, factors: Optional[dict] = None,
              pose_drift: float = 1.0, emotional_voice: bool = False, pose_range: float = 1.0,
              exp_change: float = 0.0, change_targets: Optional[Sequence[tuple]] = None,
              turn_cues: bool = False, exp_scale: float = 1.0) -> dict:
    """Render one clip: {'frames' uint8 [T,S,S,3], 'audio' float32 [T·640], 'landmarks' float32
    [T,68,2], 'bbox' int64 [T,4], 'factors' {mouth, pose, expression, blink}}.

    `factors` overrides sampling (used by swap tests); otherwise drawn from `rng` (`pose_drift`,
    `pose_range`, `exp_change`, `change_targets`: see :func:`sample_factors`).  `emotional_voice`
    colours the speech by `emotion` and `level` (:data:`VOICE_EMOTIONS`); off, the voice is neutral.
    The voice keeps the clip's own label through an expression change.  `turn_cues`: see
    :func:`render_frames` (same factors, landmarks and audio; only turned frames' pixels differ).
    `exp_scale` multiplies how far the expression factors move the face (landmarks, lids, blush)
    while ``factors['expression']`` keeps their values: the same expression, drawn larger.
    """
    if num_frames < 1:
        raise InputError(f"a clip needs at least one frame, got {num_frames}")
    if size < 16:
        raise InputError(f"size must be at least 16 pixels, got {size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    r_factors, r_audio = rng.spawn(2)
    if factors is None:
        factors = sample_factors(r_factors, num_frames, emotion, level, pose_drift, pose_range, exp_change,
                                 change_targets)
    t0 = time.perf_counter()
    drawn = factors["expression"] if exp_scale == 1.0 else factors["expression"] * np.float32(exp_scale)
    frames, landmarks = render_frames(ident, factors["mouth"], factors["pose"], drawn,
                                      factors["blink"], size=size, turn_cues=turn_cues)
    t1 = time.perf_counter()
    voice = (emotion, LEVEL_SCALE.get(level, 1.0)) if emotional_voice and emotion else (None, 1.0)
    audio = synthesize_audio(factors["mouth"], ident, r_audio, *voice)
    t2 = time.perf_counter()
    return {"frames": frames, "audio": audio, "landmarks": landmarks, "bbox": face_boxes(landmarks, size),
            "factors": factors, "timing": {"render_s": t1 - t0, "audio_s": t2 - t1}}


def _save_npz(path: Path, arrays: dict) -> None:
    """np.savez with fixed zip timestamps (byte-reproducible), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def mel_available() -> bool:
    """Whether trees get mel/ side files (the audio front end, edtalk.audio, imports)."""
    return _mel_fn() is not None


def _mel_fn():
    try:
        from edtalk.audio import mel_windows
    except ImportError:  # the audio front end is optional for SynthTalk
        return None
    return mel_windows


def write_clip(root: Path, name: str, clip: dict, meta: dict, mel: bool = True) -> None:
    """Write one clip's video, audio and side files under `root` (folders must exist)."""
    import soundfile as sf

    from edtalk.video import write_video

    paths = layout.clip_paths(root, name)
    wav_tmp = paths["audio"].with_name(paths["audio"].name + ".tmp.wav")
    sf.write(str(wav_tmp), clip["audio"], layout.SAMPLE_RATE, subtype="PCM_16")
    os.replace(wav_tmp, paths["audio"])
    write_video(paths["video"], clip["frames"], fps=layout.FPS, audio=paths["audio"])
    _save_npy(paths["landmark"], clip["landmarks"].astype(np.float32))
    _save_npy(paths["bbox"], clip["bbox"].astype(np.int64))
    if mel:
        mel_windows = _mel_fn()
        if mel_windows is not None:
            m = mel_windows(str(paths["audio"]))[:, 0].numpy().astype(np.float32)
            _save_npy(paths["mel"], m)
    f = clip["factors"]
    _save_npz(paths["factors"], {
        **{k: f[k] for k in layout.FACTOR_FRAME_KEYS},
        "mouth_names": np.array(MOUTH_NAMES), "pose_names": np.array(POSE_NAMES),
        "expression_names": np.array(EXPRESSION_NAMES),
        **{k: np.asarray(v) for k, v in meta.items()},
    })


# --------------------------------------------------------------------------- trees


def _prepare_root(root: Path, overwrite: bool, mel: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise InputError(f"{root} is not empty; pass overwrite=True (--overwrite) to replace it")
        if not (root / "synthtalk.json").is_file():
            raise InputError(f"{root} is not empty and was not written by SynthTalk; refusing to delete it")
        shutil.rmtree(root)
    parts = list(layout.REQUIRED_DIRS) + ["factors"] + (["mel"] if mel else [])
    for part in parts:
        (root / part).mkdir(parents=True, exist_ok=True)


def _frames_range(frames) -> tuple:
    if isinstance(frames, int):
        return frames, frames
    if isinstance(frames, str):
        lo, _, hi = frames.partition("-")
        lo, hi = int(lo), int(hi or lo)
    else:
        lo, hi = int(frames[0]), int(frames[1])
    if lo < 1 or hi < lo:
        raise InputError(f"bad frame count {frames!r}: use N or LO-HI with 1 ≤ LO ≤ HI")
    return lo, hi


def _split_groups(groups: Sequence[str], test_fraction: float) -> set:
    n_test = int(np.ceil(len(groups) * test_fraction)) if len(groups) >= 2 else 0
    n_test = min(n_test, len(groups) - 1)
    return set(groups[len(groups) - n_test:]) if n_test > 0 else set()


def _progress(total: int, desc: str, quiet: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    if quiet or tqdm is None:
        class _Null:
            def update(self, n=1): ...
            def close(self): ...
        return _Null()
    return tqdm(total=total, desc=desc, unit="clip", leave=False, dynamic_ncols=True)


class _Writer:
    """Writes clips on one background thread so ffmpeg/mel overlap the next clip's rendering."""

    def __init__(self, root: Path, mel: bool, bar):
        self.root, self.mel, self.bar = root, mel, bar
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending = []

    def submit(self, name, clip, meta):
        if len(self.pending) >= 2:
            self.pending.pop(0).result()
        fut = self.pool.submit(write_clip, self.root, name, clip, meta, self.mel)
        fut.add_done_callback(lambda _: self.bar.update(1))
        self.pending.append(fut)

    def close(self):
        try:
            for fut in self.pending:
                fut.result()
        finally:
            self.pool.shutdown(wait=True)
            self.bar.close()


def _write_manifest(root: Path, info: dict) -> None:
    (root / "synthtalk.json").write_text(json.dumps(info, indent=1, sort_keys=True))


def _definitions() -> dict:
    return {"mouth": list(MOUTH_NAMES), "pose": list(POSE_NAMES), "expression": list(EXPRESSION_NAMES),
            "emotion_vectors": {k: v.tolist() for k, v in EMOTION_VECTORS.items()},
            "level_scale": {str(k): v for k, v in LEVEL_SCALE.items()}}


def _speaker_id(k: int) -> str:
    return f"{'M' if k % 2 == 0 else 'W'}{101 + k:03d}"


def generate_mead(out: os.PathLike, speakers: int = 2, emotions: Sequence[str] = layout.EMOTIONS,
                  levels: Sequence[int] = layout.LEVELS, clips_per: int = 1, frames=32, size: int = 64,
                  seed: int = 0, mel: bool = True, test_fraction: float = 0.25, overwrite: bool = False,
                  neutral_levels: bool = False, validate: bool = True, quiet: bool = True, stats: Optional[dict] = None,
                  pose_drift: float = 1.0, emotional_voice: bool = False, pose_range: float = 1.0,
                  exp_change: float = 0.0, turn_cues: bool = False, exp_scale: float = 1.0,
                  shared_motion: bool = False):
    """Write a MEAD-style tree (``<speaker>#<emotion>#level_<k>#<nnn>``) at `out`.

    Neutral only at level 1 like MEAD unless `neutral_levels`.  Speakers M101, W102, …; the last
    ceil(N·test_fraction) speakers are the test split.  Returns the :class:`layout.TreeReport`
    (validated with media checks when `validate`), else None.

    `pose_range` widens the head motion within each clip (:func:`sample_pose`).  `exp_change` is
    the probability that a non-neutral clip changes part-way to another (emotion, level) of this
    tree (:func:`sample_change`); its factors file then also holds ``exp_change_emotion`` ('' when
    the clip does not change), ``exp_change_level``, ``exp_change_start`` (−1), ``exp_change_frames``
    and the per-frame ``exp_change_weight`` [T] (0 = the name's label, 1 = the new one); the
    per-frame ``expression`` is the truth throughout.  `turn_cues` renders head turns with the
    cues of :func:`render_frames` (manifest key ``turn_cues``).  `exp_scale` draws every
    expression that many times larger (:func:`make_clip`; manifest key ``exp_scale``; the factors
    files keep the expression values).  `shared_motion`: every clip of a speaker reuses that
    speaker's mouth, head-pose and blink tracks (cut to the clip's length), so frame t of any two of
    its clips differs only in expression: exact expression-only pairs (manifest key
    ``shared_motion``).  Defaults write today's bytes.
    """
    root = Path(out)
    if speakers < 1 or clips_per < 1:
        raise InputError("need at least one speaker and one clip per emotion/level")
    for e in emotions:
        if e not in EMOTION_VECTORS:
            raise InputError(f"unknown emotion {e!r}; expected one of {', '.join(layout.EMOTIONS)}")
    for lv in levels:
        if lv not in LEVEL_SCALE:
            raise InputError(f"level must be 1, 2 or 3, got {lv!r}")
    lo, hi = _frames_range(frames)
    pose_range = _number(pose_range, "pose range", 0.0, np.inf)
    exp_change = _number(exp_change, "expression change rate", 0.0, 1.0)
    exp_scale = _number(exp_scale, "expression scale", 0.0, 5.0)
    mel = mel and _mel_fn() is not None
    _prepare_root(root, overwrite, mel)
    jobs = []
    for spk in range(speakers):
        for e in emotions:
            for lv in levels:
                if e == "neutral" and lv != 1 and not neutral_levels:
                    continue
                for k in range(clips_per):
                    jobs.append((spk, e, lv, k))
    labels = sorted({(e, lv) for _, e, lv, _ in jobs}, key=lambda x: (layout.EMOTIONS.index(x[0]), x[1]))
    names_by_speaker: dict = {}
    stats = stats if stats is not None else {}
    bar = _progress(len(jobs), "SynthTalk MEAD", quiet)
    writer = _Writer(root, mel, bar)
    try:
        idents = {}
        for spk, e, lv, k in jobs:
            if spk not in idents:
                idents[spk] = sample_identity(np.random.default_rng([seed, 1, spk, 0]))
            rng = np.random.default_rng([seed, 1, spk, 1 + layout.EMOTIONS.index(e), lv, k])
            T = int(rng.integers(lo, hi + 1))
            factors = None
            if shared_motion:
                factors = sample_factors(np.random.default_rng([seed, 3, spk, 1 + layout.EMOTIONS.index(e), lv, k]),
                                         T, e, lv, pose_drift, pose_range, exp_change, labels)
                factors.update(_speaker_motion(seed, spk, hi, pose_drift, pose_range, T))
            clip = make_clip(idents[spk], T, size, rng, emotion=e, level=lv, pose_drift=pose_drift,
                             emotional_voice=emotional_voice, pose_range=pose_range, exp_change=exp_change,
                             change_targets=labels, turn_cues=turn_cues, exp_scale=exp_scale, factors=factors)
            _add_timing(stats, clip, T)
            name = layout.format_mead_name(_speaker_id(spk), e, lv, k + 1)
            names_by_speaker.setdefault(_speaker_id(spk), []).append(name)
            meta = {"emotion": e, "level": lv, "speaker": _speaker_id(spk), "identity": idents[spk].vector(),
                    "start_frame": 0, "size": size, "seed": seed}
            if exp_change > 0:
                meta.update(_change_meta(clip["factors"].pop("change"), T))
            writer.submit(name, clip, meta)
    finally:
        writer.close()
    test_speakers = _write_splits(root, names_by_speaker, test_fraction)
    _write_manifest(root, {"generator": "synthtalk", "version": VERSION, "kind": "mead", "seed": seed, "size": size,
                           "speakers": speakers, "emotions": list(emotions), "levels": list(levels),
                           "clips_per": clips_per, "frames": [lo, hi], "mel": mel, "pose_drift": pose_drift,
                           "emotional_voice": emotional_voice,
                           **({"pose_range": pose_range} if pose_range != 1.0 else {}),
                           **({"exp_change": exp_change} if exp_change > 0 else {}),
                           **({"turn_cues": True} if turn_cues else {}),
                           **({"exp_scale": exp_scale} if exp_scale != 1.0 else {}),
                           **({"shared_motion": True} if shared_motion else {}),
                           "test_speakers": sorted(test_speakers), "factors": _definitions()})
    return layout.validate_tree(root, "mead", check_media=True) if validate else None


def _speaker_motion(seed: int, spk: int, frames: int, pose_drift: float, pose_range: float, T: int) -> dict:
    """One speaker's mouth, pose and blink tracks of `frames` frames, cut to T (`shared_motion`)."""
    r_mouth, r_pose, r_blink = np.random.default_rng([seed, 2, spk]).spawn(3)
    return {"mouth": sample_mouth(r_mouth, frames)[:T].astype(np.float32),
            "pose": sample_pose(r_pose, frames, pose_drift, pose_range)[:T].astype(np.float32),
            "blink": sample_blinks(r_blink, frames)[:T].astype(np.float32)}


def _number(value, what: str, lo: float, hi: float) -> float:
    """float(value) within [lo, hi] (finite), else one InputError line."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not np.isfinite(x) or not lo <= x <= hi:
        bound = f"≥ {lo:g}" if hi == np.inf else f"in [{lo:g}, {hi:g}]"
        raise InputError(f"{what} must be a finite number {bound}, got {value!r}")
    return x


def _change_meta(change: Optional[dict], T: int) -> dict:
    """The exp_change_* keys of a factors file (see :func:`generate_mead`)."""
    if change is None:
        return {"exp_change_emotion": "", "exp_change_level": 0, "exp_change_start": -1, "exp_change_frames": 0,
                "exp_change_weight": np.zeros(T, np.float32)}
    return {"exp_change_emotion": change["emotion"], "exp_change_level": change["level"],
            "exp_change_start": change["start"], "exp_change_frames": change["frames"],
            "exp_change_weight": change["weight"]}


def _add_timing(stats: dict, clip: dict, frames: int) -> None:
    for key, val in clip.pop("timing").items():
        stats[key] = stats.get(key, 0.0) + val
    stats["frames"] = stats.get("frames", 0) + frames


def _write_splits(root: Path, names_by_group: dict, test_fraction: float) -> list:
    """Whole speakers / videos go to one split; returns the test groups."""
    test = _split_groups(list(names_by_group), test_fraction)
    layout.write_split(root, "train", [n for g, ns in names_by_group.items() if g not in test for n in ns])
    layout.write_split(root, "test", [n for g, ns in names_by_group.items() if g in test for n in ns])
    return test


def generate_hdtf(out: os.PathLike, videos: int = 2, seconds: float = 7.0, size: int = 64, seed: int = 0,
                  mel: bool = True, test_fraction: float = 0.25, overwrite: bool = False, validate: bool = True,
                  quiet: bool = True, stats: Optional[dict] = None, turn_cues: bool = False):
    """Write an HDTF-style tree: each video (SYN_Person<k>_000) is cut into 5 s clips ``<video>#<k>``
    (125 frames, the short tail kept).  The last ceil(V·test_fraction) videos are the test split.
    `turn_cues`: see :func:`generate_mead`."""
    root = Path(out)
    if videos < 1 or seconds <= 0:
        raise InputError("need at least one video of positive length")
    total = int(round(seconds * layout.FPS))
    mel = mel and _mel_fn() is not None
    _prepare_root(root, overwrite, mel)
    n_clips = -(-total // layout.HDTF_CLIP_FRAMES)
    stats = stats if stats is not None else {}
    bar = _progress(videos * n_clips, "SynthTalk HDTF", quiet)
    writer = _Writer(root, mel, bar)
    names_by_video: dict = {}
    try:
        for v in range(videos):
            video = f"SYN_Person{v:03d}_000"
            ident = sample_identity(np.random.default_rng([seed, 2, v, 0]))
            full = make_clip(ident, total, size, np.random.default_rng([seed, 2, v, 1]), turn_cues=turn_cues)
            _add_timing(stats, full, total)
            for c in range(n_clips):
                a, b = c * layout.HDTF_CLIP_FRAMES, min(total, (c + 1) * layout.HDTF_CLIP_FRAMES)
                clip = {"frames": full["frames"][a:b], "landmarks": full["landmarks"][a:b], "bbox": full["bbox"][a:b],
                        "audio": full["audio"][a * layout.SAMPLES_PER_FRAME:b * layout.SAMPLES_PER_FRAME],
                        "factors": {k: x[a:b] for k, x in full["factors"].items()}}
                name = layout.format_hdtf_name(video, c + 1)
                names_by_video.setdefault(video, []).append(name)
                writer.submit(name, clip, {"emotion": "", "level": 0, "speaker": video, "identity": ident.vector(),
                                           "start_frame": a, "size": size, "seed": seed})
    finally:
        writer.close()
    test_videos = _write_splits(root, names_by_video, test_fraction)
    _write_manifest(root, {"generator": "synthtalk", "version": VERSION, "kind": "hdtf", "seed": seed, "size": size,
                           "videos": videos, "seconds": seconds, "mel": mel,
                           **({"turn_cues": True} if turn_cues else {}), "test_videos": sorted(test_videos),
                           "factors": _definitions()})
    return layout.validate_tree(root, "hdtf", check_media=True) if validate else None


def generate(out: os.PathLike, kind: str = "both", **kwargs) -> dict:
    """Write ``out/mead`` and/or ``out/hdtf``; kwargs go to :func:`generate_mead` / :func:`generate_hdtf`
    (``speakers, emotions, levels, clips_per, frames, neutral_levels, pose_drift, emotional_voice, pose_range,
    exp_change, exp_scale`` → MEAD only; ``videos, seconds`` → HDTF only; the rest, ``turn_cues`` too, to both).
    Returns {kind: TreeReport or None}."""
    if kind not in ("mead", "hdtf", "both"):
        raise InputError(f"kind must be mead, hdtf or both, got {kind!r}")
    mead_only = {"speakers", "emotions", "levels", "clips_per", "frames", "neutral_levels", "pose_drift",
                 "emotional_voice", "pose_range", "exp_change", "exp_scale", "shared_motion"}
    hdtf_only = {"videos", "seconds"}
    out = Path(out)
    reports = {}
    if kind in ("mead", "both"):
        reports["mead"] = generate_mead(out / "mead", **{k: v for k, v in kwargs.items() if k not in hdtf_only})
    if kind in ("hdtf", "both"):
        reports["hdtf"] = generate_hdtf(out / "hdtf", **{k: v for k, v in kwargs.items() if k not in mead_only})
    return reports


def load_factors(root: os.PathLike, names: Optional[Sequence[str]] = None, split: Optional[str] = None):
    """Stack the ground truth of a SynthTalk tree for probes.

    Returns (truth {'mouth' [N,3], 'pose' [N,6], 'expression' [N,6], 'blink' [N,1]}, groups [N] clip
    index per frame, names) over `names` (default: the split's list, or train+test).
    """
    root = Path(root)
    if names is None:
        names = layout.read_split(root, split) if split else layout.list_clips(root)
    truth = {k: [] for k in layout.FACTOR_FRAME_KEYS}
    groups = []
    for i, name in enumerate(names):
        path = layout.clip_path(root, "factors", name)
        if not path.is_file():
            raise InputError(f"missing factors for {name}: {path}")
        with np.load(path, allow_pickle=False) as fz:
            for k in truth:
                truth[k].append(fz[k].reshape(fz[k].shape[0], -1))
            groups.append(np.full(fz["mouth"].shape[0], i))
    if not groups:
        raise InputError(f"no clips in {root}")
    return {k: np.concatenate(v).astype(np.float32) for k, v in truth.items()}, np.concatenate(groups), list(names)


if __name__ == "__main__":  # the command moved into the `edtalk` command line
    print("edtalk: error: run `edtalk synthtalk ...` (or `python -m edtalk synthtalk ...`)", file=sys.stderr)
    sys.exit(2)
