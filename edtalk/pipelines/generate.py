"""Talking-head generation: every official mode behind one options object (spec §5).

Modes (picked from the inputs):
- video-driven (EDTalk-V / lip-pose V): `lip` video drives the mouth;
- audio-driven (EDTalk-A / lip-pose A): `audio` drives the mouth through Audio2Lip;
- dubbing: the source is a *video*; each of its frames is identity and pose, audio drives the mouth.
Pose comes from a video or is held `fixed` at the source's own pose; expression from a video, a
preset (with intensity), a blend of presets, an `.npy` of weights, or `none`.

Efficiency: the source is encoded once per clip (and its EEM terms cached), each driver video is
encoded once (even when it drives several factors), only the heads whose output is used run,
and frames are rendered in batches.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .. import audio as audio_lib
from ..errors import CheckpointError, EDTalkError, InputError
from ..presets import expression_from_spec, is_preset_spec, load_weights_file, parse_preset_spec
from .drivers import expression_frame_count, extend_indices
from .preprocess import (IMAGE_EXTS, VIDEO_EXTS, PreparedVideo, is_video_path, prepare_image,
                         prepare_video)

DEFAULT_CHECKPOINT_DIR = Path(os.environ.get("EDTALK_CHECKPOINTS", "checkpoints"))
EDTALK_FILE, LIP_POSE_FILE, AUDIO2LIP_FILE = "EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt"
AUDIO_BATCH = 256  # mel windows per Audio2Lip call (a small network: large batches are cheap)
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass
class GenerateOptions:
    source: str
    out: str = "results/edtalk.mp4"
    lip: Optional[str] = None
    audio: Optional[str] = None
    pose: str = "fixed"
    exp: Optional[str] = None
    exp_intensity: float = 1.0
    checkpoint: Optional[str] = None
    audio2lip_checkpoint: Optional[str] = None
    checkpoint_dir: str = str(DEFAULT_CHECKPOINT_DIR)
    device: str = "auto"
    dtype: str = "fp32"
    batch_size: Optional[int] = None  # None: default_batch_size(device)
    crop: bool = True
    paste_back: bool = False
    legacy_normalize: bool = False
    smoothing: str = "edge"
    parity: bool = False
    save_frames: Optional[str] = None
    face_backend: str = "dlib"
    progress: bool = True
    face_sr: bool = False  # GFPGAN x2 on every output frame (edtalk.face.restore)
    face_sr_weights: Optional[str] = None  # None: $EDTALK_GFPGAN_WEIGHTS


@dataclass
class Drivers:
    """Per-output-frame motion weights (float32, on the model device)."""

    mouth: torch.Tensor
    pose: Optional[torch.Tensor]
    exp: Optional[torch.Tensor]
    exp_constant: bool = False  # one expression for every frame (presets, source's own)

    def __len__(self):
        return self.mouth.shape[0]


# ----------------------------------------------------------------------------- set-up helpers

def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA GPU is available")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was requested but MPS is not available")
    return device


def default_batch_size(device) -> int:
    """CPU: 2 frames measured fastest (2 cores; larger batches fall out of cache); GPU: 8."""
    return 2 if torch.device(device).type == "cpu" else 8


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r} (use fp32, fp16 or bf16)")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise InputError("fp16 needs a GPU; use --dtype bf16 or fp32 on the CPU")
    return dtype


def expression_is_none(exp: Optional[str]) -> bool:
    return exp is None or str(exp).strip().lower() in ("none", "")


def resolve_checkpoint(opts: GenerateOptions) -> Path:
    if opts.checkpoint:
        return Path(opts.checkpoint)
    folder = Path(opts.checkpoint_dir)
    if expression_is_none(opts.exp) and (folder / LIP_POSE_FILE).is_file():
        return folder / LIP_POSE_FILE
    if (folder / EDTALK_FILE).is_file() or not expression_is_none(opts.exp):
        return folder / EDTALK_FILE
    return folder / LIP_POSE_FILE


def missing_checkpoint_error(path: Path) -> CheckpointError:
    return CheckpointError(f"checkpoint not found: {path} — run `edtalk download` or place the file by hand "
                           "(see checkpoints/README.md)")


def load_models(opts: GenerateOptions, need_audio: bool, device, dtype):
    from ..model import EDTalk
    from ..networks.audio2lip import Audio2Lip

    ckpt = resolve_checkpoint(opts)
    if not ckpt.exists():
        raise missing_checkpoint_error(ckpt)
    model = (EDTalk.from_pretrained(ckpt) if ckpt.is_dir() else EDTalk.from_official(ckpt)).to(device, dtype)
    audio2lip = None
    if need_audio:
        a2l = Path(opts.audio2lip_checkpoint) if opts.audio2lip_checkpoint else Path(opts.checkpoint_dir) / AUDIO2LIP_FILE
        if not a2l.exists():
            raise missing_checkpoint_error(a2l)
        audio2lip = (Audio2Lip.from_pretrained(a2l) if a2l.is_dir() else Audio2Lip.from_official(a2l)).to(device)
    model.requires_grad_(False)
    if audio2lip is not None:
        audio2lip.requires_grad_(False)
    return model, audio2lip


# ----------------------------------------------------------------------------- the engine

class Generator:
    """Batched, cached generation on one loaded model (+ Audio2Lip for audio modes)."""

    def __init__(self, model, audio2lip=None, batch_size: int = 8, progress: bool = True):
        self.model = model.eval()
        self.audio2lip = audio2lip.eval() if audio2lip is not None else None
        self.batch_size = max(1, int(batch_size))
        self.progress = progress

    @property
    def device(self):
        return self.model.device

    @property
    def dtype(self):
        return self.model.dtype

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(device=self.device, dtype=self.dtype)

    def batches(self, n: int, desc: str, size: Optional[int] = None):
        size = size or self.batch_size
        starts = range(0, n, size)
        if self.progress and n > size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch", leave=False)
        for s in starts:
            yield slice(s, min(n, s + size))

    @torch.inference_mode()
    def video_latents(self, video: PreparedVideo) -> torch.Tensor:
        """Encoder latents of every frame of a driver video, computed once per video (kept on it)."""
        if video.latents is None:
            out = [self.model.encode_latent(self.to_model(video.images(sl)))
                   for sl in self.batches(len(video), "encoding driver")]
            video.latents = torch.cat(out)
        return video.latents

    @torch.inference_mode()
    def heads(self, latents: torch.Tensor, parts) -> Dict[str, torch.Tensor]:
        # Weights stay in at least float32 (fp16/bf16 models still get precise α).
        out = self.model.motion_weights(latent=latents, parts=parts)
        return {k: v.to(torch.promote_types(v.dtype, torch.float32)) for k, v in out.items()}

    @torch.inference_mode()
    def mouth_from_audio(self, wav: np.ndarray, smoothing: str = "edge") -> torch.Tensor:
        if self.audio2lip is None:
            raise CheckpointError("audio-driven generation needs an Audio2Lip checkpoint")
        mels = audio_lib.mel_windows(wav)
        param = next(self.audio2lip.parameters())
        out = torch.cat([self.audio2lip(mels[sl].to(param.device, param.dtype)) for sl in self.batches(len(mels), "audio", AUDIO_BATCH)])
        return audio_lib.smooth(out.float(), mode=smoothing)

    @torch.inference_mode()
    def render(self, latent, feats, drivers: Drivers, on_frames: Callable[[torch.Tensor], None],
               desc: str = "rendering") -> None:
        """Render all frames of one source in batches; `on_frames` receives float frames [b,3,H,W]."""
        feats = self.model.prepare_source(feats)
        for sl in self.batches(len(drivers), desc):
            exp = None
            if drivers.exp is not None:
                exp = drivers.exp[:1] if drivers.exp_constant else drivers.exp[sl]
            pose = drivers.pose[sl] if drivers.pose is not None else None
            on_frames(self.model.render(latent, feats, drivers.mouth[sl], pose, exp))


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Clamp to [-1,1], then round((x+1)·127.5): [B,3,H,W] → uint8 [B,H,W,3]."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def legacy_minmax_uint8(frames: torch.Tensor) -> np.ndarray:
    """The official per-clip min–max mapping ⌊255(x−min)/(max−min)⌋ (opt-in only; bug 3)."""
    x = frames.float()
    lo, hi = x.min(), x.max()
    x = torch.floor(255 * (x - lo) / torch.clamp(hi - lo, min=1e-12)).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------- the modes

def mode_of(opts: GenerateOptions) -> str:
    if is_video_path(opts.source):
        if not opts.audio:
            raise InputError("dubbing a source video needs --audio")
        return "dubbing"
    if opts.lip:
        return "video"
    if opts.audio:
        return "audio"
    raise InputError("nothing drives the mouth: give --lip VIDEO (video-driven) or --audio FILE (audio-driven)")


class _VideoStore:
    """Prepared driver videos, loaded once per path."""

    def __init__(self, size: int, opts: GenerateOptions):
        self.size, self.opts, self.cache = size, opts, {}

    def get(self, path: str, keep_original: bool = False) -> PreparedVideo:
        """`keep_original` keeps the full frames (only a dubbed source needs them, for paste-back)."""
        key = str(Path(path).resolve())
        if key not in self.cache:
            self.cache[key] = prepare_video(path, self.size, crop=self.opts.crop, backend=self.opts.face_backend,
                                            keep_original=keep_original)
        return self.cache[key]


def _expand(weights: torch.Tensor, length: int, rule: str = "pingpong") -> torch.Tensor:
    idx = torch.as_tensor(extend_indices(weights.shape[0], length, rule), device=weights.device)
    return weights.index_select(0, idx)


def _expression_weights(opts, gen: Generator, videos: _VideoStore, own_exp, length):
    """[L,10] expression weights, or None for the lip-pose model."""
    model = gen.model
    if expression_is_none(opts.exp):
        # With only the full model, "none" keeps the source's own expression (spec §5.1 [D]).
        return own_exp.expand(length, -1) if model.has_expression else None
    exp = str(opts.exp)
    kind = expression_kind(exp)
    if kind == "npy":
        weights = torch.from_numpy(load_weights_file(exp)).to(model.device)
        return _expand(weights, length)
    if kind == "preset":
        vec = torch.from_numpy(expression_from_spec(exp, opts.exp_intensity)).to(model.device)
        return vec[None].expand(length, -1)
    if kind == "image":
        # A single image drives a constant expression.
        img = prepare_image(exp, model.config.size, crop=opts.crop, backend=opts.face_backend)
        with torch.inference_mode():
            lat = model.encode_latent(gen.to_model(img.tensor))
        return gen.heads(lat, ("exp",))["exp"].expand(length, -1)
    video = videos.get(exp)
    weights = gen.heads(gen.video_latents(video), ("exp",))["exp"]
    weights = weights[:expression_frame_count(len(weights))]
    if opts.exp_intensity != 1.0:
        warnings.warn("--exp-intensity applies to presets only; ignored for an expression video")
    return _expand(weights, length)


def expression_kind(exp: Optional[str]) -> str:
    """'none', 'preset', 'npy', 'video' or 'image'; a clear error for anything else."""
    if expression_is_none(exp):
        return "none"
    if is_preset_spec(str(exp)):
        return "preset"
    path = Path(str(exp))
    if path.is_file() or path.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS | {".npy"}:
        if not path.is_file():
            raise InputError(f"--exp {exp!r} is neither a file nor a preset (see `edtalk presets`)")
        if path.suffix.lower() == ".npy":
            return "npy"
        return "video" if is_video_path(path) else "image"
    parse_preset_spec(str(exp))  # raises a specific error for unknown names / bad weights
    return "preset"


def _pose_weights(opts, gen: Generator, videos: _VideoStore, own_pose, length):
    if opts.pose is None or str(opts.pose).lower() in ("fixed", "source", "none"):
        return own_pose.expand(length, -1)
    video = videos.get(opts.pose)
    weights = gen.heads(gen.video_latents(video), ("pose",))["pose"]
    return _expand(weights, length, "hold" if opts.parity else "pingpong")


@dataclass
class GenerationResult:
    path: Path
    mode: str
    num_frames: int
    variant: str
    info: Dict[str, str] = field(default_factory=dict)


def generate(opts: GenerateOptions, model=None, audio2lip=None) -> GenerationResult:
    """Run one generation end to end and write `opts.out` atomically (no partial file on error)."""
    if opts.face_sr:  # a missing gfpgan package or weights file fails before any work
        from ..face.restore import check_face_restoration

        check_face_restoration(opts.face_sr_weights)
    mode = mode_of(opts)
    out = Path(opts.out)
    _check_output_path(out)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    wav = None
    if opts.audio:  # required by the audio modes; the soundtrack in video-driven mode
        wav = audio_lib.load_audio(opts.audio)
        audio_lib.check_audio(wav, opts.audio)
    if model is None:
        model, audio2lip = load_models(opts, need_audio=mode in ("audio", "dubbing"), device=device, dtype=dtype)
    expression_kind(opts.exp)  # validate before any heavy work
    if not expression_is_none(opts.exp) and not model.has_expression:
        raise CheckpointError("expression driving needs the full EDTalk checkpoint (EDTalk.pt), "
                              "not the lip-pose model; or use --exp none")
    gen = Generator(model, audio2lip, opts.batch_size or default_batch_size(model.device), opts.progress)
    size = model.config.size
    videos = _VideoStore(size, opts)
    smoothing = "official" if opts.parity else opts.smoothing

    frames_out: List[np.ndarray] = []
    raw_frames: List[torch.Tensor] = []

    def collect(frames: torch.Tensor):
        if opts.legacy_normalize:
            raw_frames.append(frames.float().cpu())
        else:
            frames_out.append(to_uint8(frames))

    if mode == "dubbing":
        mouth = gen.mouth_from_audio(wav, smoothing)
        source_video = videos.get(opts.source, keep_original=opts.paste_back)
        _dub(opts, gen, source_video, mouth, collect)
        paste_target = source_video
    else:
        source = prepare_image(opts.source, size, crop=opts.crop, backend=opts.face_backend)
        with torch.inference_mode():
            latent, feats = model.encode(gen.to_model(source.tensor))
        own = gen.heads(latent, ("pose", "exp"))
        if mode == "audio":
            mouth = gen.mouth_from_audio(wav, smoothing)
            length = mouth.shape[0]
        else:
            lip_video = videos.get(opts.lip)
            mouth = gen.heads(gen.video_latents(lip_video), ("mouth",))["mouth"]
            length = mouth.shape[0]
            if wav is None:
                wav = _audio_track_or_none(opts.lip)
        drivers = Drivers(
            mouth=mouth.to(model.device),
            pose=_pose_weights(opts, gen, videos, own["pose"], length),
            exp=_expression_weights(opts, gen, videos, own.get("exp"), length),
        )
        drivers.exp_constant = drivers.exp is not None and bool((drivers.exp == drivers.exp[:1]).all())
        gen.render(latent, feats, drivers, collect)
        paste_target = source

    frames = legacy_minmax_uint8(torch.cat(raw_frames)) if opts.legacy_normalize else np.concatenate(frames_out)
    if opts.paste_back:
        frames = paste_target.paste_back(frames)
    _write_outputs(opts, out, frames, wav)
    return GenerationResult(out, mode, len(frames), model.variant)


def _dub(opts, gen: Generator, video: PreparedVideo, mouth: torch.Tensor, collect):
    """Dubbing: frame i of the (extended) source video is identity and pose; audio drives lips."""
    model = gen.model
    length = mouth.shape[0]
    idx = extend_indices(len(video), length)
    preset = None
    if not expression_is_none(opts.exp):  # generate() already checked the model has an expression space
        if not is_preset_spec(str(opts.exp)):
            raise InputError("in dubbing, --exp takes a preset (or none to keep each frame's own expression)")
        preset = torch.from_numpy(expression_from_spec(opts.exp, opts.exp_intensity)).to(model.device)
    with torch.inference_mode():
        for sl in gen.batches(length, "dubbing"):
            frames = gen.to_model(video.images(idx[sl]))
            latent, feats = model.encode(frames)
            own = gen.heads(latent, ("pose", "exp"))
            exp = None
            if model.has_expression:
                exp = preset[None].expand(latent.shape[0], -1) if preset is not None else own["exp"]
            collect(model.render(latent, feats, mouth[sl].to(model.device), own["pose"], exp))


def _audio_track_or_none(path) -> Optional[np.ndarray]:
    try:
        wav = audio_lib.load_audio(path)
        audio_lib.check_audio(wav, str(path))
        return wav
    except InputError:
        return None


def _check_output_path(out: Path) -> None:
    if out.exists() and out.is_dir():
        raise InputError(f"output path is a directory: {out}")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder is not writable: {parent}")
    if out.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise InputError(f"output must be a video file (.mp4), got {out.name}")


def _write_outputs(opts, out: Path, frames: np.ndarray, wav: Optional[np.ndarray]) -> None:
    from ..video import write_video

    audio = None
    if wav is not None:
        audio = wav[: len(frames) * audio_lib.SAMPLES_PER_FRAME]
    write_video(out, frames, fps=audio_lib.FPS, audio=audio, sample_rate=audio_lib.SAMPLE_RATE)
    if opts.save_frames:
        _save_pngs(Path(opts.save_frames), frames)


def _save_pngs(folder: Path, frames: np.ndarray) -> None:
    from PIL import Image

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".frames-"))
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"{i:06d}.png")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["GenerateOptions", "Generator", "Drivers", "generate", "to_uint8", "legacy_minmax_uint8",
           "resolve_device", "resolve_dtype", "EDTalkError"]
