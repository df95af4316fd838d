"""Audio2Lip (docs/design.md §2.9): Wav2Lip-style audio encoder on 80×16 mel windows → 20 mouth weights."""
from __future__ import annotations

import torch
from torch import nn

from ..config import Audio2LipConfig
from ..convert import official
from ..modeling import PretrainedModel


class AudioConvBlock(nn.Module):
    """Conv2d (bias) → BatchNorm2d → (+x if residual) → ReLU."""

    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual
        self.act = nn.ReLU()

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def audio_encoder_blocks(channels, extra_residual_256: bool = False) -> nn.Sequential:
    """The 13-block Wav2Lip audio encoder (14 with SyncNet's extra residual block)."""
    c1, c2, c3, c4, c5 = channels
    blocks = [
        AudioConvBlock(1, c1, 3, 1, 1),
        AudioConvBlock(c1, c1, 3, 1, 1, residual=True),
        AudioConvBlock(c1, c1, 3, 1, 1, residual=True),
        AudioConvBlock(c1, c2, 3, (3, 1), 1),
        AudioConvBlock(c2, c2, 3, 1, 1, residual=True),
        AudioConvBlock(c2, c2, 3, 1, 1, residual=True),
        AudioConvBlock(c2, c3, 3, 3, 1),
        AudioConvBlock(c3, c3, 3, 1, 1, residual=True),
        AudioConvBlock(c3, c3, 3, 1, 1, residual=True),
        AudioConvBlock(c3, c4, 3, (3, 2), 1),
        AudioConvBlock(c4, c4, 3, 1, 1, residual=True),
    ]
    if extra_residual_256:
        blocks.append(AudioConvBlock(c4, c4, 3, 1, 1, residual=True))
    blocks += [AudioConvBlock(c4, c5, 3, 1, 0), AudioConvBlock(c5, c5, 1, 1, 0)]
    return nn.Sequential(*blocks)


class Audio2Lip(nn.Module, PretrainedModel):
    """Mel windows [T,1,80,16] (or [B,T,1,80,16]) → mouth weights [T,20] (or [B,T,20])."""

    model_type, label = "audio2lip", "Audio2Lip checkpoint"
    config_classes = {"config": Audio2LipConfig}
    default_names = ("Audio2Lip.pt", "Audio2Lip")
    official_reader = staticmethod(official.read_audio2lip)

    def __init__(self, config: Audio2LipConfig = None):
        super().__init__()
        self.config = config or Audio2LipConfig()
        self.audio_encoder = audio_encoder_blocks(self.config.channels)
        self.mapping = nn.Linear(self.config.embed_dim, self.config.mouth_dim)
        nn.init.zeros_(self.mapping.bias)

    def embed(self, mels: torch.Tensor) -> torch.Tensor:
        """Audio embeddings [N,512] for windows [N,1,80,16]."""
        return self.audio_encoder(mels).flatten(1)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        batched = mels.dim() == 5
        flat = mels.flatten(0, 1) if batched else mels
        param = next(self.parameters())
        out = self.mapping(self.embed(flat.to(device=param.device, dtype=param.dtype)))
        return out.view(mels.shape[0], mels.shape[1], -1) if batched else out


def load_audio2lip(path, device=None) -> Audio2Lip:
    """A frozen, eval-mode Audio2Lip: an official `.pt`, a saved folder, or an audio2lip run / its export/."""
    return Audio2Lip.from_pretrained(path, device).requires_grad_(False)


def with_audio2lip_arguments(arguments: dict, tensors) -> dict:
    """Init arguments of a model saved with its frozen Audio2Lip (weights `audio2lip.*`): folders
    saved before the one config.json schema lack the `audio2lip` config; read it off the weights."""
    if "audio2lip" in arguments:
        return arguments
    weights = {k[len("audio2lip."):]: v for k, v in tensors.items() if k.startswith("audio2lip.")}
    return {**arguments, "audio2lip": official.audio2lip_config(weights)} if weights else arguments
