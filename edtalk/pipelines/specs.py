"""Typed driver specs of :class:`edtalk.EDTalkPipeline` and the one parser of the command line's strings.

What drives each factor:

- mouth (`lip=`): a video (file, uint8 frames `[T,H,W,3]` or model images `[T,3,S,S]` in [-1,1]),
  or :class:`Weights` (mouth weights `[T,20]`, e.g. Audio2Lip's); else the speech (`audio=`);
- pose (`pose=`): None / "fixed" (the source's own, held still), a video, :class:`Weights` `[T,6]`,
  or :class:`PoseFromSpeech` ("audio": sampled by the audio-to-pose flow);
- expression (`exp=`): None / "none" (the source's own), :class:`Preset` ("happy",
  "happy:0.7+surprised:0.3", scaled by intensity), a video or image of a face, :class:`Weights`
  `[10]` or `[T,10]` (an `.npy` file is read into one), or :class:`ExpressionFromSpeech` ("audio",
  and/or a transcript `exp_text=`).

Strings are parsed here into these types, so the page, the command line and Python callers meet
the same checks; a mistake is an InputError whose `field` names the argument.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from ..errors import InputError
from ..presets import blend, is_preset_spec, load_weights_file, parse_preset_spec, preset
from .preprocess import IMAGE_EXTS, VIDEO_EXTS, is_video_path

FIXED_POSE_WORDS = ("fixed", "source", "none")
SMOOTHING = ("edge", "official", "none")


@dataclass(frozen=True)
class Preset:
    """An expression preset, or a blend of presets by weight; `intensity` scales from neutral
    (0 neutral, 1 the preset, >1 stronger). Names come from the pipeline's preset table."""

    weights: Mapping[str, float]
    intensity: float = 1.0

    @classmethod
    def parse(cls, text: str, intensity: float = 1.0) -> "Preset":
        """'happy', 'happy:0.7+surprised:0.3' or 'happy+sad' (names checked against the table in use)."""
        return cls(dict(parse_preset_spec(text)), float(intensity))

    def vector(self) -> np.ndarray:
        """α_e [10] float32 from the preset table in use."""
        if len(self.weights) == 1:
            return preset(next(iter(self.weights)), self.intensity)
        return blend(dict(self.weights), self.intensity)


@dataclass(frozen=True)
class Weights:
    """Motion weights given directly: `[T,D]` for T frames or `[D]` for every frame (mouth D=20,
    pose D=6, expression D=10). Taken as given: no tail trim, shorter ones ping-pong."""

    values: Any

    def tensor(self, dim: int, field: str) -> torch.Tensor:
        values = self.values
        t = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values, np.float32))
        t = t.reshape(1, -1) if t.dim() == 1 else t
        if t.dim() != 2 or t.shape[-1] != dim or len(t) == 0:
            raise InputError(f"{field} weights must have shape [{dim}] or [T,{dim}], got {tuple(t.shape)}", field=field,
                             plain=f"weights must have shape [{dim}] or [T,{dim}], got {tuple(t.shape)}")
        return t


@dataclass(frozen=True)
class PoseFromSpeech:
    """The head pose sampled from the speech by the audio-to-pose flow: z ~ N(0, temperature²·I)
    (0: the most likely path), seeded with `seed`; needs a pose_flow model."""

    temperature: float = 0.7
    seed: int = 0


@dataclass(frozen=True)
class ExpressionFromSpeech:
    """One expression for the utterance, predicted from the speech (`audio`) and/or a transcript
    (`text`) by the audio/text-to-expression predictor, scaled by `intensity`; needs an audio2exp model."""

    audio: bool = True
    text: Optional[str] = None
    intensity: float = 1.0


Media = Union[str, Path, np.ndarray, torch.Tensor]
PoseSpec = Union[None, Media, Weights, PoseFromSpeech]
ExpressionSpec = Union[None, Media, Preset, Weights, ExpressionFromSpeech]


def is_media(value) -> bool:
    return isinstance(value, (str, Path, np.ndarray, torch.Tensor))


def is_video(value) -> bool:
    """A video input: a file with a video extension, or frames [T,...] in memory."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim == 4
    return value is not None and is_video_path(value)


def number(value, field: str, flag: str, kind=float):
    """`value` as `kind`; an InputError naming the field when it is not a number."""
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        result = kind(value)
        if kind is int and float(value) != result:
            raise ValueError
        return result
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise InputError(f"{flag} must be {what}, got {value!r}", field=field, plain=f"must be {what}, got {value!r}") \
            from None


def parse_pose(pose, temperature: float = 0.7, seed: int = 0) -> PoseSpec:
    """None (the source's own pose), a video, Weights or PoseFromSpeech, from a value or a CLI string."""
    if isinstance(pose, (PoseFromSpeech, Weights)) or pose is None:
        return pose
    if isinstance(pose, (str, Path)):
        word = str(pose).strip().lower()
        if word in FIXED_POSE_WORDS or word == "":
            return None
        if word == "audio":
            temperature = number(temperature, "pose_temperature", "--pose-temperature")
            if temperature < 0:
                raise InputError("--pose-temperature must be 0 or more", field="pose_temperature",
                                 plain="must be 0 or more")
            return PoseFromSpeech(temperature, number(seed, "seed", "--seed", int))
        return pose
    if is_media(pose):
        return pose
    raise InputError(f"--pose takes a video, 'fixed' or 'audio', got {type(pose).__name__}", field="pose",
                     plain=f"takes a video, 'fixed' or 'audio', got {type(pose).__name__}")


def expression_is_none(exp) -> bool:
    return exp is None or (isinstance(exp, (str, Path)) and str(exp).strip().lower() in ("none", ""))


def parse_expression(exp, intensity: float = 1.0, text: Optional[str] = None) -> ExpressionSpec:
    """The expression driver from a value or a CLI string (with `--exp-intensity` and `--exp-text`).

    Call inside the preset table's context (`presets_from`): preset names are checked against it.
    """
    intensity = number(intensity, "exp_intensity", "--exp-intensity")
    if text is not None:
        if not str(text).strip():
            raise InputError("--exp-text is empty", field="exp_text", plain="the transcript is empty")
        if expression_is_none(exp) or str(exp).strip().lower() == "text":
            return ExpressionFromSpeech(audio=False, text=str(text), intensity=intensity)
        if isinstance(exp, ExpressionFromSpeech) or str(exp).strip().lower() == "audio":
            return ExpressionFromSpeech(audio=True, text=str(text), intensity=intensity)
        raise InputError("--exp-text combines only with --exp audio (or no --exp)", field="exp_text",
                         plain="a transcript goes only with the expression from the speech")
    if isinstance(exp, (Preset, Weights, ExpressionFromSpeech)) or expression_is_none(exp):
        return None if expression_is_none(exp) else exp
    if isinstance(exp, (np.ndarray, torch.Tensor)):
        return exp
    if not isinstance(exp, (str, Path)):
        raise InputError(f"--exp takes a preset, a file or 'audio', got {type(exp).__name__}", field="exp",
                         plain=f"takes a preset, a file or 'audio', got {type(exp).__name__}")
    word = str(exp).strip().lower()
    if word == "audio":
        return ExpressionFromSpeech(audio=True, intensity=intensity)
    if word == "text":
        raise InputError('--exp text needs --exp-text "a sentence"', field="exp_text",
                         plain="give the sentence whose emotion is read")
    if is_preset_spec(str(exp)):
        return Preset.parse(str(exp), intensity)
    path = Path(str(exp))
    if path.is_file() or path.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS | {".npy"}:
        if not path.is_file():
            raise InputError(f"--exp {str(exp)!r} is neither a file nor a preset (see `edtalk presets`)", field="exp",
                             plain=f"{path.name} is neither a file nor a preset")
        if path.suffix.lower() == ".npy":  # weights files are taken as given (no tail trim)
            try:
                return Weights(load_weights_file(path))
            except InputError as exc:
                raise InputError(str(exc), field="exp") from None
        return str(exp)
    try:
        parse_preset_spec(str(exp))  # raises a specific error for unknown names / bad weights
    except InputError as exc:
        raise InputError(str(exc), field="exp") from None
    return Preset.parse(str(exp), intensity)


def check_choice(value: str, choices, field: str, flag: str) -> str:
    if value not in choices:
        raise InputError(f"{flag} must be one of {', '.join(choices)}, got {value!r}", field=field,
                         plain=f"must be one of {', '.join(choices)}, got {value!r}")
    return value


__all__ = ["Preset", "Weights", "PoseFromSpeech", "ExpressionFromSpeech", "parse_pose", "parse_expression",
           "expression_is_none", "is_video", "is_media", "number", "check_choice", "FIXED_POSE_WORDS", "SMOOTHING"]
