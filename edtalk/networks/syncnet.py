"""SyncNet expert (docs/design.md §2.10): the Wav2Lip-style "color" lip-sync discriminator.

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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import _ConfigMixin
from ..convert import official
from ..modeling import PretrainedModel
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


class SyncNet(nn.Module, PretrainedModel):
    """Face windows [B,15,48,96] and mel windows [B,1,80,16] → unit embeddings [B,512] each."""

    model_type, label = "syncnet", "SyncNet expert"
    config_classes = {"config": SyncNetConfig}
    default_names = ("syncnet",)
    official_reader = staticmethod(official.read_syncnet)  # a Wav2Lip-layout .pth/.pt

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


def load_syncnet(path, device=None) -> SyncNet:
    """A SyncNet expert (eval mode) from our folder format, a Wav2Lip-layout .pth/.pt file, or a
    syncnet run / its export/."""
    return SyncNet.from_pretrained(path, device)


__all__ = ["SyncNet", "SyncNetConfig", "load_syncnet", "face_encoder_blocks", "FACE_SIZE", "NUM_FRAMES"]
