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

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..audio import mel_windows
from ..audio_features import audio_embeddings, utterance_features, with_energy
from ..errors import CheckpointError
from ..networks.expression_predictor import EXPRESSION_DIR as AUDIO2EXP_DIR
from ..networks.pose_flow import POSE_FLOW_DIR, load_pose_flow
from .loader_cache import cached_loader

__all__ = ["PREDICTED_EXP", "POSE_FLOW_DIR", "AUDIO2EXP_DIR", "pose_is_audio", "check_pose_flow",
           "check_expression_predictor", "sample_pose", "audio_pose_sequence", "predict_expression"]

PREDICTED_EXP = ("audio", "text")


def pose_is_audio(pose) -> bool:
    return str(pose).strip().lower() == "audio"


def _check_exists(path: Path, what: str, flag: str, config: str, field: str, plain: str) -> None:
    if not Path(path).exists():
        raise CheckpointError(f"{what} checkpoint not found: {path} — give {flag} or train one "
                              f"(`edtalk train --config configs/train/{config}`)", field=field, plain=plain)


def check_pose_flow(path: Path) -> None:
    _check_exists(path, "audio-to-pose", "--pose-flow-checkpoint", "pose_flow.yaml", "pose",
                  f"from the speech needs a {POSE_FLOW_DIR}/ model in the checkpoint folder")


def check_expression_predictor(path: Path) -> None:
    _check_exists(path, "audio/text-to-expression", "--exp-predictor-checkpoint", "audio2exp.yaml", "exp",
                  f"from the speech needs an {AUDIO2EXP_DIR}/ model in the checkpoint folder")


def _embeddings(audio2lip, wav: np.ndarray) -> torch.Tensor:
    return audio_embeddings(audio2lip, mel_windows(wav))


@torch.no_grad()
def sample_pose(flow, audio2lip, wav: np.ndarray, own_pose: torch.Tensor, temperature: float = 0.7,
                seed: int = 0) -> torch.Tensor:
    """α_p [T,6] (one per audio frame) sampled by the flow, seeded with the source's α_p [1,6]."""
    generator = torch.Generator().manual_seed(int(seed))
    audio = _embeddings(audio2lip, wav)
    if flow.config.energy:
        audio = with_energy(audio, wav)
    poses = flow.sample(audio[None], own_pose.float().cpu().reshape(1, -1), temperature=float(temperature),
                        generator=generator)
    return poses[0].to(own_pose.device)


def audio_pose_sequence(opts, wav: np.ndarray, own_pose: torch.Tensor) -> torch.Tensor:
    """`sample_pose` with the flow of generation options (`pose_flow_checkpoint`, else
    `<checkpoint_dir>/pose_flow`), loaded once per process."""
    path = Path(opts.pose_flow_checkpoint) if opts.pose_flow_checkpoint else Path(opts.checkpoint_dir) / POSE_FLOW_DIR
    flow, audio2lip = cached_loader(load_pose_flow)(path)
    return sample_pose(flow, audio2lip, wav, own_pose, opts.pose_temperature, opts.seed)


@torch.no_grad()
def predict_expression(net, audio2lip, text_encoder, wav: Optional[np.ndarray], use_audio: bool,
                       text: Optional[str], intensity: float, device) -> torch.Tensor:
    """One α_e [1,10] for the utterance from the speech (`use_audio`) and/or a transcript."""
    from ..text_emotion import TextFeatures

    audio = utterance_features(_embeddings(audio2lip, wav))[None] if use_audio else None
    text_features = torch.from_numpy(TextFeatures(text_encoder)(text))[None] if text is not None else None
    exp, _ = net(audio=audio, text=text_features)
    return (exp * float(intensity)).to(device)
