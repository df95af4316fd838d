"""Drivers predicted from the speech (and text) for `edtalk generate` (docs/design.md §8.5, §8.6).

- `--pose audio`: the audio-to-pose flow samples one α_p per audio frame, seeded with the source's
  α_p (`--pose-temperature`, `--seed`); checkpoint `--pose-flow-checkpoint` or
  `<checkpoint-dir>/pose_flow/` (a `pose_flow` training run's `export/`).
- `--exp audio` / `--exp-text "..."`: the audio/text-to-expression predictor gives one α_e for the
  utterance, used like a preset (scaled by `--exp-intensity`); with both, both modalities feed it.
  Checkpoint `--exp-predictor-checkpoint` or `<checkpoint-dir>/audio2exp/`.

The sequences go through `drivers.plan_drivers` like any other driver.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..audio import mel_windows
from ..audio_features import audio_embeddings, utterance_features, with_energy
from ..errors import CheckpointError, InputError
from ..networks.expression_predictor import EXPRESSION_DIR as AUDIO2EXP_DIR
from ..networks.expression_predictor import load_expression_predictor
from ..networks.pose_flow import POSE_FLOW_DIR, load_pose_flow
from ..onnx.runtime import load_onnx_expression_predictor, load_onnx_pose_flow, uses_onnx
from .loader_cache import cached_loader  # loaded once per process (the web page, edtalk batch)

__all__ = ["PREDICTED_EXP", "POSE_FLOW_DIR", "AUDIO2EXP_DIR", "pose_is_audio", "prepare_predicted_drivers",
           "audio_pose_sequence", "predicted_expression"]

PREDICTED_EXP = ("audio", "text")


def pose_is_audio(pose) -> bool:
    return str(pose).strip().lower() == "audio"


def _pose_flow_path(opts) -> Path:
    if uses_onnx(opts):  # the export's own copy (edtalk export-onnx)
        return Path(opts.onnx_dir or ".") / POSE_FLOW_DIR
    return Path(opts.pose_flow_checkpoint) if opts.pose_flow_checkpoint else Path(opts.checkpoint_dir) / POSE_FLOW_DIR


def _predictor_path(opts) -> Path:
    if uses_onnx(opts):
        return Path(opts.onnx_dir or ".") / AUDIO2EXP_DIR
    return (Path(opts.exp_predictor_checkpoint) if opts.exp_predictor_checkpoint
            else Path(opts.checkpoint_dir) / AUDIO2EXP_DIR)


def _loader(opts, torch_loader, onnx_loader):
    return cached_loader(onnx_loader if uses_onnx(opts) else torch_loader)


def _check_exists(path: Path, what: str, flag: str, config: str) -> None:
    if not path.exists():
        raise CheckpointError(f"{what} checkpoint not found: {path} — give {flag} or train one "
                              f"(`edtalk train --config configs/train/{config}`)")


def prepare_predicted_drivers(opts, mode: str):
    """Validate the predicted-driver options before any heavy work; returns opts with `--exp-text`
    alone turned into `exp='text'` (so the full model and the expression path are chosen)."""
    exp = None if opts.exp is None else str(opts.exp).strip().lower()
    if opts.exp_text is not None:
        if not str(opts.exp_text).strip():
            raise InputError("--exp-text is empty")
        if exp in (None, "", "none", "text"):
            opts, exp = replace(opts, exp="text"), "text"
        elif exp != "audio":
            raise InputError("--exp-text combines only with --exp audio (or no --exp)")
    elif exp == "text":
        raise InputError("--exp text needs --exp-text \"a sentence\"")
    if exp in PREDICTED_EXP:
        if exp == "audio" and not opts.audio:
            raise InputError("--exp audio needs --audio (the speech whose emotion is read)")
        if mode == "dubbing":
            raise InputError("--exp audio / --exp-text are not available in dubbing; use a preset")
        _check_exists(_predictor_path(opts), "audio/text-to-expression", "--exp-predictor-checkpoint",
                      "audio2exp.yaml")
    if pose_is_audio(opts.pose):
        if not opts.audio:
            raise InputError("--pose audio needs --audio (the speech that drives the head)")
        _check_exists(_pose_flow_path(opts), "audio-to-pose", "--pose-flow-checkpoint", "pose_flow.yaml")
    return opts


def _embeddings(audio2lip, wav: np.ndarray) -> torch.Tensor:
    return audio_embeddings(audio2lip, mel_windows(wav))


@torch.no_grad()
def audio_pose_sequence(opts, wav: np.ndarray, own_pose: torch.Tensor) -> torch.Tensor:
    """α_p [T,6] (one per audio frame) sampled by the flow, seeded with the source's α_p [1,6]."""
    flow, audio2lip = _loader(opts, load_pose_flow, load_onnx_pose_flow)(_pose_flow_path(opts))
    generator = torch.Generator().manual_seed(int(opts.seed))
    audio = _embeddings(audio2lip, wav)
    if flow.config.energy:
        audio = with_energy(audio, wav)
    poses = flow.sample(audio[None], own_pose.float().cpu().reshape(1, -1),
                        temperature=float(opts.pose_temperature), generator=generator)
    return poses[0].to(own_pose.device)


@torch.no_grad()
def predicted_expression(opts, wav: Optional[np.ndarray], device) -> torch.Tensor:
    """One α_e [1,10] for the utterance from the speech (`--exp audio`) and/or `--exp-text`."""
    from ..text_emotion import TextFeatures

    net, audio2lip, text_encoder = _loader(opts, load_expression_predictor,
                                           load_onnx_expression_predictor)(_predictor_path(opts))
    audio = utterance_features(_embeddings(audio2lip, wav))[None] if str(opts.exp).lower() == "audio" else None
    text = None
    if opts.exp_text is not None:
        text = torch.from_numpy(TextFeatures(text_encoder)(opts.exp_text))[None]
    exp, _ = net(audio=audio, text=text)
    return (exp * float(opts.exp_intensity)).to(device)
