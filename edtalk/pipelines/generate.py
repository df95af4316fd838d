"""Talking-head generation: every official mode behind one options object (docs/design.md §5).

Modes (picked from the inputs):
- video-driven (EDTalk-V / lip-pose V): `lip` video drives the mouth;
- audio-driven (EDTalk-A / lip-pose A): `audio` drives the mouth through Audio2Lip;
- dubbing: the source is a *video*; each of its frames is identity and pose, audio drives the mouth.
Pose comes from a video or is held `fixed` at the source's own pose; expression from a video, a
preset (with intensity), a blend of presets, an `.npy` of weights, or `none`.

Which driver frame fills which slot of which output frame is decided by one pure function,
`drivers.plan_drivers` (extension, expression tail trim, parity rules).

Efficiency: the source is encoded once per clip (and its EEM terms cached), each driver video is
encoded once (even when it drives several factors), only the heads whose output is used run,
and frames are rendered in batches. Memory: videos are decoded, cropped, rendered, pasted back
and encoded batch by batch (frames are piped into ffmpeg), so peak memory does not grow with the
clip's length; only per-frame motion weights and driver latents (a few KB a frame) are kept.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from .. import audio as audio_lib
from ..checkpoints import find_model
from ..errors import CheckpointError, EDTalkError, InputError
from ..presets import (choose_preset_dir, expression_from_spec, is_preset_spec, load_weights_file, parse_preset_spec,
                       presets_from)
# Device and dtype choice is edtalk.runtime's (one rule with training); importable from here too.
from ..runtime import DTYPES, default_batch_size, resolve_device, resolve_dtype  # noqa: F401
from .audio_drivers import (PREDICTED_EXP, audio_pose_sequence, pose_is_audio, predicted_expression,
                            prepare_predicted_drivers)
from .drivers import DUBBING_POSE_ERROR, EXP_TAIL_TRIM, DriverPlan, plan_drivers
from .preprocess import IMAGE_EXTS, VIDEO_EXTS, VideoSource, is_video_path, open_video, prepare_image

DEFAULT_CHECKPOINT_DIR = Path(os.environ.get("EDTALK_CHECKPOINTS", "checkpoints"))
EDTALK_FILE, LIP_POSE_FILE, AUDIO2LIP_FILE = "EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt"
AUDIO_BATCH = 256  # mel windows per Audio2Lip call (a small network: large batches are cheap)


@dataclass
class GenerateOptions:
    source: str
    out: str = "results/edtalk.mp4"
    lip: Optional[str] = None
    audio: Optional[str] = None
    pose: str = "fixed"
    exp: Optional[str] = None
    exp_intensity: float = 1.0
    presets: Optional[str] = None  # preset folder; None: the generator's presets/ (then $EDTALK_PRESETS, official)
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
    pose_temperature: float = 0.7  # --pose audio: z ~ N(0, τ²I); 0 = the mode-like path
    seed: int = 0  # --pose audio: the sampling seed
    pose_flow_checkpoint: Optional[str] = None  # None: <checkpoint_dir>/pose_flow
    exp_text: Optional[str] = None  # a sentence whose emotion drives the expression
    exp_predictor_checkpoint: Optional[str] = None  # None: <checkpoint_dir>/audio2exp
    engine: str = "torch"  # or "onnx": the networks of an `edtalk export-onnx` folder, run by onnxruntime
    onnx_dir: Optional[str] = None  # the export folder (--engine onnx)


@dataclass
class Drivers:
    """Per-output-frame motion weights (float32, on the model device)."""

    mouth: torch.Tensor
    pose: Optional[torch.Tensor]
    exp: Optional[torch.Tensor]
    exp_constant: bool = False  # one expression for every frame (presets, source's own)

    def __len__(self):
        return self.mouth.shape[0]

    @classmethod
    def from_plan(cls, plan: DriverPlan, mouth: torch.Tensor, own_pose: torch.Tensor,
                  pose: Optional[torch.Tensor] = None, exp: Optional[torch.Tensor] = None,
                  constant_exp: Optional[torch.Tensor] = None) -> "Drivers":
        """Gather per-frame weights by the plan's index arrays.

        mouth [N_lip,20]; own_pose [1,6] (used where no pose sequence drives); pose [N_pose,6] and
        exp [N_exp,10] driver sequences (indexed by plan.pose / plan.exp); constant_exp [1,10] for
        a preset / image / the source's own expression, None for the lip-pose model.
        """
        def take(weights, index):
            return weights.index_select(0, torch.as_tensor(index, device=weights.device))

        length = len(plan)
        pose_w = take(pose, plan.pose) if plan.pose is not None else own_pose.expand(length, -1)
        exp_w = None
        if plan.exp is not None:
            exp_w = take(exp, plan.exp)
        elif constant_exp is not None:
            exp_w = constant_exp.reshape(1, -1).expand(length, -1)
        constant = exp_w is not None and bool((exp_w == exp_w[:1]).all())
        return cls(take(mouth, plan.lip), pose_w, exp_w, exp_constant=constant)


# ----------------------------------------------------------------------------- set-up helpers

def expression_is_none(exp: Optional[str]) -> bool:
    return exp is None or str(exp).strip().lower() in ("none", "")


def model_part(folder: Path, file_name: str) -> Optional[Path]:
    """`EDTalk.pt` (an official-format file) or `EDTalk/` (a saved model folder: model.safetensors +
    config.json) in `folder`, whichever is there; None when neither is."""
    found = find_model(folder, "", (file_name, Path(file_name).stem), named_only=True)
    return found.path if found is not None else None


def resolve_checkpoint(opts: GenerateOptions) -> Path:
    if opts.checkpoint:
        return Path(opts.checkpoint)
    folder = Path(opts.checkpoint_dir)
    full, lip_pose = model_part(folder, EDTALK_FILE), model_part(folder, LIP_POSE_FILE)
    if expression_is_none(opts.exp) and lip_pose is not None:
        return lip_pose
    if full is not None or not expression_is_none(opts.exp):
        return full or folder / EDTALK_FILE
    return folder / LIP_POSE_FILE


def resolve_audio2lip(opts: GenerateOptions) -> Path:
    if opts.audio2lip_checkpoint:
        return Path(opts.audio2lip_checkpoint)
    folder = Path(opts.checkpoint_dir)
    return model_part(folder, AUDIO2LIP_FILE) or folder / AUDIO2LIP_FILE


def missing_checkpoint_error(path: Path) -> CheckpointError:
    from ..bundled import bundled_model_hint

    return CheckpointError(f"checkpoint not found: {path} — run `edtalk download` or place the file by hand "
                           f"(see checkpoints/README.md){bundled_model_hint(path)}")


def load_models(opts: GenerateOptions, need_audio: bool, device, dtype):
    from ..model import EDTalk
    from ..networks.audio2lip import Audio2Lip

    ckpt = resolve_checkpoint(opts)
    if not ckpt.exists():
        raise missing_checkpoint_error(ckpt)
    model = EDTalk.from_pretrained(ckpt).to(device, dtype)
    audio2lip = None
    if need_audio:
        a2l = resolve_audio2lip(opts)
        if not a2l.exists():
            raise missing_checkpoint_error(a2l)
        audio2lip = Audio2Lip.from_pretrained(a2l).to(device)
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
    def video_latents(self, video) -> torch.Tensor:
        """Encoder latents of every frame of a driver video, computed once per video (kept on it;
        the frames themselves stream through one batch at a time)."""
        if video.latents is None:
            batches = video.image_batches(self.batch_size)
            if self.progress and len(video) > self.batch_size:
                from tqdm.auto import tqdm

                batches = tqdm(batches, desc="encoding driver", unit="batch", leave=False,
                               total=-(-len(video) // self.batch_size))
            video.latents = torch.cat([self.model.encode_latent(self.to_model(b)) for b in batches])
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


def legacy_minmax_uint8(frames: torch.Tensor, lo=None, hi=None) -> np.ndarray:
    """The official per-clip min–max mapping ⌊255(x−min)/(max−min)⌋ (opt-in only; bug 3).
    `lo`/`hi`: the clip's extremes (default: those of `frames`)."""
    x = frames.float()
    lo = x.min() if lo is None else torch.as_tensor(lo, dtype=x.dtype)
    hi = x.max() if hi is None else torch.as_tensor(hi, dtype=x.dtype)
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


def check_pose_option(mode: str, pose) -> None:
    """Dubbing takes the pose from each source frame: a pose video there is refused, not ignored."""
    if mode == "dubbing" and not pose_is_fixed(pose):
        raise InputError(DUBBING_POSE_ERROR)


def pose_is_fixed(pose) -> bool:
    return pose is None or str(pose).lower() in ("fixed", "source", "none")


class _VideoStore:
    """Video inputs, opened (face tube found) once per path."""

    def __init__(self, size: int, opts: GenerateOptions):
        self.size, self.opts, self.cache = size, opts, {}

    def get(self, path: str, keep_original: bool = False) -> VideoSource:
        """`keep_original` decodes full-size frames (only a dubbed source needs them, for paste-back)."""
        key = str(Path(path).resolve())
        if key not in self.cache:
            self.cache[key] = open_video(path, self.size, crop=self.opts.crop, backend=self.opts.face_backend,
                                         keep_original=keep_original, progress=self.opts.progress)
        return self.cache[key]


@dataclass
class _Expression:
    """An expression driver: a per-frame sequence (indexed by the plan) or one constant vector."""

    sequence: Optional[torch.Tensor] = None  # [N,10]
    constant: Optional[torch.Tensor] = None  # [1,10]
    trim: int = 0  # tail frames the plan drops from a long sequence


def _expression_driver(opts, gen: Generator, videos: _VideoStore, own_exp, wav=None) -> _Expression:
    """The expression slot's driver; constant None (and no sequence) for the lip-pose model."""
    model = gen.model
    if expression_is_none(opts.exp):
        # With only the full model, "none" keeps the source's own expression (docs/design.md §5.1 [D]).
        return _Expression(constant=own_exp if model.has_expression else None)
    exp = str(opts.exp)
    kind = expression_kind(exp)
    if kind in PREDICTED_EXP:  # one α_e for the utterance, used like a preset
        return _Expression(constant=predicted_expression(opts, wav, model.device))
    if kind == "npy":  # weights files are taken as given (no tail trim)
        return _Expression(sequence=torch.from_numpy(load_weights_file(exp)).to(model.device))
    if kind == "preset":
        return _Expression(constant=torch.from_numpy(expression_from_spec(exp, opts.exp_intensity)).to(model.device)[None])
    if kind == "image":
        # A single image drives a constant expression.
        img = prepare_image(exp, model.config.size, crop=opts.crop, backend=opts.face_backend)
        with torch.inference_mode():
            lat = model.encode_latent(gen.to_model(img.tensor))
        return _Expression(constant=gen.heads(lat, ("exp",))["exp"])
    if opts.exp_intensity != 1.0:
        warnings.warn("--exp-intensity applies to presets only; ignored for an expression video")
    video = videos.get(exp)
    return _Expression(sequence=gen.heads(gen.video_latents(video), ("exp",))["exp"], trim=EXP_TAIL_TRIM)


def expression_kind(exp: Optional[str]) -> str:
    """'none', 'preset', 'npy', 'video' or 'image'; a clear error for anything else."""
    if expression_is_none(exp):
        return "none"
    if str(exp).strip().lower() in PREDICTED_EXP:
        return str(exp).strip().lower()
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


def _pose_sequence(opts, gen: Generator, videos: _VideoStore) -> Optional[torch.Tensor]:
    """Pose weights [N,6] of the pose video, or None when the source's own pose is held."""
    if pose_is_fixed(opts.pose):
        return None
    return gen.heads(gen.video_latents(videos.get(opts.pose)), ("pose",))["pose"]


@dataclass
class GenerationResult:
    path: Path
    mode: str
    num_frames: int
    variant: str
    info: Dict[str, str] = field(default_factory=dict)


def generate(opts: GenerateOptions, model=None, audio2lip=None) -> GenerationResult:
    """Run one generation end to end and write `opts.out` atomically (no partial file on error).
    Presets come from `opts.presets`, else from the generator's own presets/ folder (edtalk.presets)."""
    generator = resolve_checkpoint(opts) if opts.engine != "onnx" else Path(opts.onnx_dir or ".") / "EDTalk"
    with presets_from(choose_preset_dir(opts.presets, generator)):
        return _generate(opts, model, audio2lip)


def _generate(opts: GenerateOptions, model, audio2lip) -> GenerationResult:
    if opts.face_sr:  # a missing gfpgan package or weights file fails before any work
        from ..face.restore import check_face_restoration

        check_face_restoration(opts.face_sr_weights)
    mode = mode_of(opts)
    check_pose_option(mode, opts.pose)
    opts = prepare_predicted_drivers(opts, mode)  # --pose audio / --exp audio / --exp-text: checked up front
    out = Path(opts.out)
    _check_output_path(out)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    wav = None
    if opts.audio:  # the 16 kHz mono copy feeds the mel features only; the output gets the file itself
        wav = audio_lib.load_audio(opts.audio)
        audio_lib.check_audio(wav, opts.audio)
    if model is None:  # --engine onnx: the exported graphs (edtalk.onnx); torch: None here
        from ..onnx.runtime import load_engine_models

        model, audio2lip = load_engine_models(opts, not expression_is_none(opts.exp), mode in ("audio", "dubbing"))
    if model is None:
        model, audio2lip = load_models(opts, need_audio=mode in ("audio", "dubbing"), device=device, dtype=dtype)
    expression_kind(opts.exp)  # validate before any heavy work
    if not expression_is_none(opts.exp) and not model.has_expression:
        raise CheckpointError("expression driving needs the full EDTalk checkpoint (EDTalk.pt), "
                              "not the lip-pose model; or use --exp none")
    gen = Generator(model, audio2lip, opts.batch_size or default_batch_size(model.device), opts.progress)
    videos = _VideoStore(model.config.size, opts)
    smoothing = "official" if opts.parity else opts.smoothing

    if mode == "dubbing":
        mouth = gen.mouth_from_audio(wav, smoothing)
        source_video = videos.get(opts.source, keep_original=opts.paste_back)
        plan = plan_drivers(mode, len(mouth), source_frames=len(source_video), parity=opts.parity)
        render = _dubbing_renderer(opts, gen, source_video, mouth, plan)
        sound = opts.audio
    else:
        render, plan, sound = _image_source_renderer(opts, gen, videos, wav, smoothing, mode)

    if opts.legacy_normalize:  # the official per-clip min–max needs the clip's extremes: a first pass
        extremes = _Extremes()
        render(extremes.update)

        def mapping(frames):
            return legacy_minmax_uint8(frames, extremes.lo, extremes.hi)
    else:
        mapping = to_uint8
    restore = None
    if opts.face_sr:
        from ..face.restore import FaceRestorer

        restore = FaceRestorer(opts.face_sr_weights, device=model.device, batch_size=gen.batch_size)
    with _FrameSink(opts, out, len(plan), sound, mapping, restore) as sink:
        render(sink.write)
    return GenerationResult(out, mode, len(plan), model.variant)


def _image_source_renderer(opts, gen: Generator, videos: _VideoStore, wav, smoothing: str, mode: str):
    """Audio- or video-driven generation from a face image: (render(on_batch), plan, sound file)."""
    model = gen.model
    source = prepare_image(opts.source, model.config.size, crop=opts.crop, backend=opts.face_backend)
    with torch.inference_mode():
        latent, feats = model.encode(gen.to_model(source.tensor))
    own = gen.heads(latent, ("pose", "exp"))
    sound = opts.audio
    if mode == "audio":
        mouth = gen.mouth_from_audio(wav, smoothing)
    else:
        mouth = gen.heads(gen.video_latents(videos.get(opts.lip)), ("mouth",))["mouth"]
        if sound is None and _has_audio_track(opts.lip):
            sound = opts.lip
    pose = audio_pose_sequence(opts, wav, own["pose"]) if pose_is_audio(opts.pose) else _pose_sequence(opts, gen, videos)
    exp = _expression_driver(opts, gen, videos, own.get("exp"), wav)
    plan = plan_drivers(mode, len(mouth), pose_frames=None if pose is None else len(pose),
                        exp_frames=None if exp.sequence is None else len(exp.sequence), parity=opts.parity,
                        lip_pose_model=not model.has_expression, exp_trim=exp.trim)
    drivers = Drivers.from_plan(plan, mouth.to(model.device), own["pose"], pose, exp.sequence, exp.constant)
    paste = source.paste_back if opts.paste_back else None

    def render(on_batch):
        gen.render(latent, feats, drivers, lambda frames: on_batch(frames, paste))

    return render, plan, sound


def _dubbing_renderer(opts, gen: Generator, video: VideoSource, mouth: torch.Tensor, plan: DriverPlan):
    """Dubbing: frame plan.source[i] of the source video is identity and pose; audio drives lips."""
    model = gen.model
    preset = None
    if not expression_is_none(opts.exp):  # generate() already checked the model has an expression space
        if not is_preset_spec(str(opts.exp)):
            raise InputError("in dubbing, --exp takes a preset (or none to keep each frame's own expression)")
        preset = torch.from_numpy(expression_from_spec(opts.exp, opts.exp_intensity)).to(model.device)
    mouth = mouth.to(model.device)

    @torch.inference_mode()
    def render(on_batch):
        done = 0
        batches = video.frames_for(plan.source, gen.batch_size)
        if gen.progress and len(plan) > gen.batch_size:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="dubbing", unit="batch", leave=False, total=-(-len(plan) // gen.batch_size))
        for index, images, crops, originals in batches:
            latent, feats = model.encode(gen.to_model(images))
            own = gen.heads(latent, ("pose", "exp"))
            exp = None
            if model.has_expression:
                exp = preset[None].expand(latent.shape[0], -1) if preset is not None else own["exp"]
            lips = mouth[plan.lip[done:done + len(index)]]
            done += len(index)
            paste = None
            if originals is not None and video.crop is not None:
                paste = _video_paster(video, originals, crops, index)
            on_batch(model.render(latent, feats, lips, own["pose"], exp), paste)

    return render


def _video_paster(video: VideoSource, originals: np.ndarray, crops: np.ndarray, index: np.ndarray):
    def paste(faces: np.ndarray) -> np.ndarray:
        from ..face import paste_back

        points = video.crop_landmarks(crops, index)
        if points is not None and faces.shape[1] != crops.shape[1]:  # --face-sr made the faces larger
            k = faces.shape[1] / crops.shape[1]
            points = (points + 0.5) * k - 0.5  # pixel-centre aligned, as the resizes
        return paste_back(originals, faces, video.crop, landmarks=points)

    return paste


class _Extremes:
    """Running min/max of rendered frames (first pass of --legacy-normalize)."""

    def __init__(self):
        self.lo, self.hi = float("inf"), float("-inf")

    def update(self, frames: torch.Tensor, paste=None) -> None:
        self.lo = min(self.lo, float(frames.float().min()))
        self.hi = max(self.hi, float(frames.float().max()))


class _FrameSink:
    """Rendered batches → uint8 → optional face restoration (--face-sr) → paste-back → MP4 (piped
    to ffmpeg) and optional PNGs.

    The video is opened at the first batch (its size is known then). Leaving the `with` block by
    an exception leaves neither a video nor a frames folder behind.
    """

    def __init__(self, opts, out: Path, num_frames: int, sound, mapping, restore=None):
        self.opts, self.out, self.num_frames, self.sound, self.mapping = opts, out, num_frames, sound, mapping
        self.restore = restore
        self.writer = None
        self.count = 0
        self.png_dir = None
        if opts.save_frames:
            folder = Path(opts.save_frames)
            folder.parent.mkdir(parents=True, exist_ok=True)
            self.png_dir = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".frames-"))

    def write(self, frames: torch.Tensor, paste=None) -> None:
        from ..video import VideoWriter

        images = self.mapping(frames)
        if self.restore is not None:
            images = self.restore(images)
        if paste is not None:
            images = paste(images)
        if self.writer is None:
            self.writer = VideoWriter(self.out, images.shape[2], images.shape[1], fps=audio_lib.FPS, audio=self.sound,
                                      num_frames=self.num_frames)
        self.writer.write(images)
        if self.png_dir is not None:
            from PIL import Image

            for image in images:
                Image.fromarray(image).save(self.png_dir / f"{self.count:06d}.png")
                self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.writer.close()
            if self.png_dir is not None:
                folder = Path(self.opts.save_frames)
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(self.png_dir, folder)
        else:
            if self.writer is not None:
                self.writer.abort()
            if self.png_dir is not None:
                shutil.rmtree(self.png_dir, ignore_errors=True)
        return False


def _has_audio_track(path) -> bool:
    from ..video import probe_video

    return probe_video(path)["audio"]


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


__all__ = ["GenerateOptions", "Generator", "Drivers", "generate", "to_uint8", "legacy_minmax_uint8",
           "resolve_device", "resolve_dtype", "model_part", "resolve_checkpoint", "resolve_audio2lip", "EDTalkError"]
