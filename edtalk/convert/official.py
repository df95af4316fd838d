"""The released EDTalk files (`EDTalk.pt`, `EDTalk_lip_pose.pt`, `Audio2Lip.pt`) and Wav2Lip-layout
SyncNet experts → (init arguments, state dict) for :meth:`edtalk.modeling.PretrainedModel.from_official`.

Every reader accepts a path (loaded safely, see :func:`edtalk.checkpoints.safe_torch_load`) or an
already loaded dict, and reads the architecture off the weights' shapes, so tiny official-format
files load as well as the released ones.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..checkpoints import (AUDIO2LIP_KEY, GENERATOR_KEY, check_kind, read_state_dict, safe_torch_load,
                           strip_prefix)
from ..errors import CheckpointError

StateDict = Dict[str, torch.Tensor]

# Output widths of the five stages of the Wav2Lip audio encoder (Audio2Lip) / face encoder (SyncNet),
# read from these blocks' first conv.
AUDIO2LIP_STAGE_BLOCKS = (0, 3, 6, 9, 11)
SYNCNET_AUDIO_STAGE_BLOCKS = (0, 3, 6, 9, 12)  # one more residual block before the last stage
SYNCNET_FACE_STAGE_BLOCKS = (0, 1, 4, 8, 11)


def generator_config(sd: StateDict) -> dict:
    """EDTalkConfig fields (size, channels, dims) of an official-format generator state dict."""
    n_res = sum(1 for k in sd if k.startswith("enc.net_app.convs.") and k.endswith(".conv1.0.weight"))
    size = 2 ** (n_res + 2)
    channels = {size: int(sd["enc.net_app.convs.0.0.weight"].shape[0])}
    for i in range(1, n_res + 1):
        channels[size // 2 ** i] = int(sd[f"enc.net_app.convs.{i}.conv2.1.weight"].shape[0])
    has_exp = "direction_exp.weight" in sd
    return dict(
        size=size,
        latent_dim=int(sd["direction_lipnonlip.weight"].shape[0]),
        channels=channels,
        mouth_dim=int(sd["lip_fc.2.weight"].shape[0]),
        pose_dim=int(sd["pose_fc.2.weight"].shape[0]),
        exp_dim=int(sd["exp_fc.2.weight"].shape[0]) if has_exp else 0,
        shared_mlp_depth=sum(1 for k in sd if k.startswith("fc.") and k.endswith(".weight")),
        adain_hidden=int(sd["dec.fineadainresblock.0.norm2.mlp_shared.0.weight"].shape[0]) if has_exp else 128,
    )


def read_generator(path_or_state_dict) -> Tuple[dict, StateDict]:
    """`EDTalk.pt` / `EDTalk_lip_pose.pt` (their `'gen'` entry, or a bare generator state dict)."""
    sd = read_state_dict(path_or_state_dict, GENERATOR_KEY)
    check_kind(sd, ("edtalk", "lip_pose"), "generator checkpoint")
    return {"config": generator_config(sd)}, sd


def _widths(sd: StateDict, prefix: str, blocks) -> list:
    return [int(sd[f"{prefix}.{i}.conv_block.0.weight"].shape[0]) for i in blocks]


def audio2lip_config(sd: StateDict) -> dict:
    """Audio2LipConfig fields of an Audio2Lip state dict (official or ours: same keys)."""
    return {"channels": _widths(sd, "audio_encoder", AUDIO2LIP_STAGE_BLOCKS),
            "mouth_dim": int(sd["mapping.weight"].shape[0])}


def read_audio2lip(path_or_state_dict) -> Tuple[dict, StateDict]:
    """`Audio2Lip.pt` (its `'audio2lip'` entry, or a bare Audio2Lip state dict)."""
    sd = read_state_dict(path_or_state_dict, AUDIO2LIP_KEY)
    check_kind(sd, ("audio2lip",), "Audio2Lip checkpoint")
    return {"config": audio2lip_config(sd)}, sd


def read_syncnet(path_or_state_dict) -> Tuple[dict, StateDict]:
    """A Wav2Lip-layout expert: {'state_dict': {face_encoder.*, audio_encoder.*}} (or that dict)."""
    obj = path_or_state_dict if isinstance(path_or_state_dict, dict) else safe_torch_load(path_or_state_dict)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    sd = strip_prefix(sd) if isinstance(sd, dict) else None
    if sd is None or "face_encoder.0.conv_block.0.weight" not in sd:
        raise CheckpointError("not a SyncNet expert checkpoint (no face_encoder.0.conv_block.0.weight)")
    config = {"face_channels": _widths(sd, "face_encoder", SYNCNET_FACE_STAGE_BLOCKS),
              "audio_channels": _widths(sd, "audio_encoder", SYNCNET_AUDIO_STAGE_BLOCKS)}
    return {"config": config}, sd
