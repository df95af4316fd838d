"""Audio2Lip (spec §2.9): Wav2Lip-style audio encoder on 80×16 mel windows → 20 mouth weights."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..config import Audio2LipConfig


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


class Audio2Lip(nn.Module):
    """Mel windows [T,1,80,16] (or [B,T,1,80,16]) → mouth weights [T,20] (or [B,T,20])."""

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

    @classmethod
    def from_official(cls, path_or_state_dict: Union[str, Path, dict], device=None) -> "Audio2Lip":
        from ..checkpoints import load_official_audio2lip

        return load_official_audio2lip(path_or_state_dict, device=device)

    def save_pretrained(self, directory) -> Path:
        from ..checkpoints import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, device=None) -> "Audio2Lip":
        from ..checkpoints import load_pretrained

        return load_pretrained(directory, expected="audio2lip", device=device)


def load_with_audio_encoder(path, folder_name: str, model_type: str, key: str, build, label: str, config_yaml: str,
                            device=None, missing_label=None):
    """(net, Audio2Lip, bundle config) from an export bundle that carries its frozen Audio2Lip (the
    pose flow and audio2exp): `path` is the bundle folder or a folder holding one (a run's
    `export/`, or the run itself); `build(config_dict)` makes the untrained net of part `key`;
    `label` names it in errors (`missing_label`, if given, in the not-found one)."""
    from ..checkpoints import find_bundle, load_bundle, load_state_dict_strict
    from ..errors import CheckpointError

    folder = find_bundle(path, folder_name)
    if folder is None:
        raise CheckpointError(f"{missing_label or label} checkpoint not found: {path} (train one with `edtalk train --config "
                              f"{config_yaml}`)")
    config, parts = load_bundle(folder, model_type, (key, "audio2lip"))
    net = build(config["config"])
    load_state_dict_strict(net, parts[key], label)
    net = net.eval().to(device or "cpu").requires_grad_(False)
    a2l = Audio2Lip.from_official({"audio2lip": parts["audio2lip"]}, device=device).requires_grad_(False)
    return net, a2l, config
