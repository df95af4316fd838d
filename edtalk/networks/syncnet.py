"""SyncNet expert (spec §2.10): the Wav2Lip-style "color" lip-sync discriminator.

- Face encoder: 17 conv blocks on [B,15,48,96] — the lower halves (48×96) of five RGB 96² face
  crops stacked frame-major (channels 0–2 = frame r, …, 12–14 = frame r+4).
- Audio encoder: the Audio2Lip stack (§2.9) with one more residual 256 block (14 blocks) on a
  [B,1,80,16] mel window.
- Both 512-d embeddings are L2-normalised; ``sync = cos(a, v)`` lies in [0,1] because every block
  ends with a ReLU.

Training II trains it (``edtalk.train``); evaluation uses it for the LSE-C/LSE-D stand-in
(``edtalk.eval.metrics.sync``). Weights: our folder format (``save_pretrained`` →
config.json + model.safetensors) or a Wav2Lip-layout checkpoint (``state_dict`` with
``face_encoder.*`` / ``audio_encoder.*``, 217 entries).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ..config import _ConfigMixin
from ..errors import CheckpointError
from .audio2lip import AudioConvBlock, audio_encoder_blocks

FACE_SIZE = 96  # face crop side; the encoder sees its lower half (48×96)
NUM_FRAMES = 5  # frames per video window


@dataclass
class SyncNetConfig(_ConfigMixin):
    """Widths of the face encoder stages (32, 64, 128, 256, 512) and of the audio encoder."""

    face_channels: tuple = (32, 64, 128, 256, 512)
    audio_channels: tuple = (32, 64, 128, 256, 512)
    model_type: str = "syncnet"

    def __post_init__(self):
        self.face_channels = tuple(int(c) for c in self.face_channels)
        self.audio_channels = tuple(int(c) for c in self.audio_channels)
        if len(self.face_channels) != 5 or len(self.audio_channels) != 5:
            raise ValueError("SyncNet face_channels and audio_channels must list 5 widths each")
        if self.face_channels[-1] != self.audio_channels[-1]:
            raise ValueError("SyncNet face and audio embeddings must have the same width")

    @property
    def embed_dim(self) -> int:
        return self.face_channels[-1]

    @classmethod
    def official(cls) -> "SyncNetConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "SyncNetConfig":
        return cls(face_channels=(4, 8, 8, 16, 16), audio_channels=(4, 8, 8, 16, 16))


def face_encoder_blocks(channels) -> nn.Sequential:
    """The 17-block face encoder: 48×96 → 46×47 → 23×24 → 12² → 6² → 3² → 1²."""
    c1, c2, c3, c4, c5 = channels
    blocks = [AudioConvBlock(NUM_FRAMES * 3, c1, 7, 1, 3),
              AudioConvBlock(c1, c2, 5, (1, 2), 1)]
    blocks += [AudioConvBlock(c2, c2, 3, 1, 1, residual=True) for _ in range(2)]
    for cin, cout, repeats in ((c2, c3, 3), (c3, c4, 2), (c4, c5, 2)):
        blocks.append(AudioConvBlock(cin, cout, 3, 2, 1))
        blocks += [AudioConvBlock(cout, cout, 3, 1, 1, residual=True) for _ in range(repeats)]
    blocks += [AudioConvBlock(c5, c5, 3, 2, 1), AudioConvBlock(c5, c5, 3, 1, 0), AudioConvBlock(c5, c5, 1, 1, 0)]
    return nn.Sequential(*blocks)


class SyncNet(nn.Module):
    """Face windows [B,15,48,96] and mel windows [B,1,80,16] → unit embeddings [B,512] each."""

    def __init__(self, config: SyncNetConfig = None):
        super().__init__()
        self.config = config or SyncNetConfig()
        self.face_encoder = face_encoder_blocks(self.config.face_channels)
        self.audio_encoder = audio_encoder_blocks(self.config.audio_channels, extra_residual_256=True)

    def _param(self):
        return next(self.parameters())

    def embed_face(self, faces: torch.Tensor) -> torch.Tensor:
        p = self._param()
        return F.normalize(self.face_encoder(faces.to(p.device, p.dtype)).flatten(1), dim=1)

    def embed_audio(self, mels: torch.Tensor) -> torch.Tensor:
        p = self._param()
        return F.normalize(self.audio_encoder(mels.to(p.device, p.dtype)).flatten(1), dim=1)

    def forward(self, mels: torch.Tensor, faces: torch.Tensor):
        """(audio embedding, face embedding), like the Wav2Lip expert."""
        return self.embed_audio(mels), self.embed_face(faces)

    @staticmethod
    def sync_score(audio_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
        """cos(a, v) per row, in [0,1] for ReLU embeddings."""
        return (audio_emb * face_emb).sum(dim=1)

    # ----------------------------------------------------------------------------- weights

    def save_pretrained(self, directory) -> Path:
        from ..checkpoints import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, device=None) -> "SyncNet":
        """Our folder format: config.json (model_type "syncnet") + model.safetensors."""
        from safetensors.torch import load_file

        from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_strict

        directory = Path(directory)
        cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not weights.is_file():
            raise CheckpointError(f"{directory} is not a saved SyncNet expert (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        data = json.loads(cfg_path.read_text())
        if data.get("model_type") != "syncnet":
            raise CheckpointError(f"{directory} holds a {data.get('model_type')} model, expected syncnet")
        model = cls(SyncNetConfig.from_dict(data))
        load_state_dict_strict(model, load_file(str(weights)), "SyncNet")
        return model.to(device or "cpu").eval()

    @classmethod
    def from_official(cls, path_or_state_dict: Union[str, Path, dict], device=None) -> "SyncNet":
        """A Wav2Lip-layout checkpoint: {'state_dict': {face_encoder.*, audio_encoder.*}} (or the dict itself)."""
        from ..checkpoints import load_state_dict_strict, safe_torch_load, strip_prefix

        obj = path_or_state_dict if isinstance(path_or_state_dict, dict) else safe_torch_load(path_or_state_dict)
        sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict) or "face_encoder.0.conv_block.0.weight" not in strip_prefix(sd):
            raise CheckpointError("not a SyncNet expert checkpoint (no face_encoder.0.conv_block.0.weight)")
        sd = strip_prefix(sd)
        width = lambda prefix, i: int(sd[f"{prefix}.{i}.conv_block.0.weight"].shape[0])  # noqa: E731
        config = SyncNetConfig(face_channels=tuple(width("face_encoder", i) for i in (0, 1, 4, 8, 11)),
                               audio_channels=tuple(width("audio_encoder", i) for i in (0, 3, 6, 9, 12)))
        model = cls(config)
        load_state_dict_strict(model, sd, "SyncNet")
        return model.to(device or "cpu").eval()


def load_syncnet(path, device=None) -> SyncNet:
    """A SyncNet expert from our folder format or a Wav2Lip-layout .pth/.pt file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"SyncNet expert not found: {path}")
    return SyncNet.from_pretrained(path, device) if path.is_dir() else SyncNet.from_official(path, device)


__all__ = ["SyncNet", "SyncNetConfig", "load_syncnet", "face_encoder_blocks", "FACE_SIZE", "NUM_FRAMES"]
