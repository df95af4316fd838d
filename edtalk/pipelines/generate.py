"""`edtalk generate`'s options (`GenerateOptions`, one field per flag) and `generate()`, which runs
them through :class:`edtalk.pipelines.pipeline.EDTalkPipeline` — the one generation path.

The work lives in three modules: `pipeline` (inputs, modes, drivers, the call), `engine` (where the
networks are, loading them, running them in batches) and `writer` (pixels, the MP4, its sound).
The names below stay importable from here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import EDTalkError, InputError  # noqa: F401 (EDTalkError: part of this module's interface)
# Device and dtype choice is edtalk.runtime's (one rule with training); importable from here too.
from ..runtime import DTYPES, default_batch_size, resolve_device, resolve_dtype  # noqa: F401
from .engine import (AUDIO2LIP_FILE, AUDIO_BATCH, EDTALK_FILE, LIP_POSE_FILE, Drivers, Generator,  # noqa: F401
                     ModelFiles, legacy_minmax_uint8, load_audio2lip, load_generator, missing_checkpoint_error,
                     model_part, to_uint8)
from .pipeline import EDTalkPipeline, _mode_of
from .specs import expression_is_none
from .writer import GenerationResult

DEFAULT_CHECKPOINT_DIR = Path(os.environ.get("EDTALK_CHECKPOINTS", "checkpoints"))


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


def model_files(opts: GenerateOptions) -> ModelFiles:
    """Where the options' networks are: --checkpoint-dir and the checkpoint flags, or --onnx-dir."""
    engine = str(opts.engine or "torch").lower()
    if engine == "onnx":
        if not opts.onnx_dir:
            raise InputError("--engine onnx needs --onnx-dir DIR (a folder made by `edtalk export-onnx`)",
                             field="engine")
        return ModelFiles(Path(opts.onnx_dir), engine="onnx")
    opt = lambda p: Path(p) if p else None  # noqa: E731
    return ModelFiles(Path(opts.checkpoint_dir), opt(opts.checkpoint), opt(opts.audio2lip_checkpoint),
                      opt(opts.pose_flow_checkpoint), opt(opts.exp_predictor_checkpoint), engine)


def pipeline_for(opts: GenerateOptions, model=None, audio2lip=None) -> EDTalkPipeline:
    """The pipeline the options describe (`model` / `audio2lip`: networks already loaded, used instead)."""
    return EDTalkPipeline(model_files(opts), opts.device, opts.dtype, generator=model, audio2lip=audio2lip,
                          presets=opts.presets, batch_size=opts.batch_size, progress=opts.progress)


def pipeline_settings(opts: GenerateOptions) -> tuple:
    """What makes two options' pipelines the same (for keeping one per setting: the web page, batch)."""
    return (model_files(opts), str(resolve_device(opts.device)), opts.dtype, str(opts.presets) if opts.presets else None)


def call_arguments(opts: GenerateOptions) -> dict:
    """The options of one call of the pipeline (everything but where the networks are and `out`)."""
    return dict(source=opts.source, audio=opts.audio, lip=opts.lip, pose=opts.pose, exp=opts.exp,
                exp_intensity=opts.exp_intensity, exp_text=opts.exp_text, seed=opts.seed,
                pose_temperature=opts.pose_temperature, crop=opts.crop, paste_back=opts.paste_back,
                smoothing=opts.smoothing, parity=opts.parity, legacy_normalize=opts.legacy_normalize,
                face_sr=opts.face_sr, face_sr_weights=opts.face_sr_weights, face_backend=opts.face_backend,
                batch_size=opts.batch_size, progress=opts.progress)


def generate(opts: GenerateOptions, model=None, audio2lip=None,
             pipeline: Optional[EDTalkPipeline] = None) -> GenerationResult:
    """Run one generation end to end and write `opts.out` atomically (no partial file on error),
    through `pipeline` (one kept for many calls) or a pipeline made from the options."""
    pipe = pipeline if pipeline is not None else pipeline_for(opts, model, audio2lip)
    return pipe.write(opts.out, save_frames=opts.save_frames, **call_arguments(opts))


# ----------------------------------------------------------------------------- the options' networks

def resolve_checkpoint(opts: GenerateOptions) -> Path:
    """The generator the options load (the lip-pose model when no expression drives and it is there)."""
    return model_files(opts).generator(not expression_is_none(opts.exp) or opts.exp_text is not None)


def resolve_audio2lip(opts: GenerateOptions) -> Path:
    return model_files(opts).audio2lip_path()


def mode_of(opts: GenerateOptions) -> str:
    """'audio', 'video' or 'dubbing', from the options' inputs."""
    return _mode_of(opts.source, opts.audio, opts.lip)


def load_models(opts: GenerateOptions, need_audio: bool, device, dtype):
    """(generator, Audio2Lip or None) as the options choose them, on `device` in `dtype`."""
    model = load_generator(resolve_checkpoint(opts), device, dtype)
    audio2lip = load_audio2lip(resolve_audio2lip(opts), device) if need_audio else None
    return model, audio2lip


__all__ = ["GenerateOptions", "GenerationResult", "Generator", "Drivers", "EDTalkPipeline", "generate",
           "pipeline_for", "pipeline_settings", "call_arguments", "model_files", "to_uint8", "legacy_minmax_uint8",
           "resolve_device", "resolve_dtype", "model_part", "resolve_checkpoint", "resolve_audio2lip", "load_models",
           "mode_of", "EDTalkError"]
