"""Appearance/motion encoder E (docs/design.md §2.2): a latent `wa` and the source feature pyramid."""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn

from ..nn.layers import ConvLayer, EqualConv2d, ResBlock, fast_inference


class EncoderApp(nn.Module):
    """ConvLayer(3,C_size,1) → ResBlocks down to 4×4 → EqualConv2d(C_4, latent, 4)."""

    def __init__(self, size: int, latent_dim: int, channels: dict):
        super().__init__()
        log_size = int(math.log2(size))
        convs = [ConvLayer(3, channels[size], 1)]
        in_ch = channels[size]
        for i in range(log_size, 2, -1):
            out_ch = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        convs.append(EqualConv2d(in_ch, latent_dim, 4, padding=0, bias=False))
        self.convs = nn.ModuleList(convs)

    def forward(self, x, with_feats: bool = True) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if fast_inference() and x.device.type == "cpu":
            # oneDNN convolutions run ~20% faster on channels-last activations.
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = []
        for conv in self.convs:
            x = conv(x)
            outputs.append(x)
        latent = outputs[-1].flatten(1)
        if not with_feats:
            return latent, []
        # Features at 8×8 .. size×size, coarsest first; the 4×4 map feeds only the latent.
        feats = [f.contiguous() for f in outputs[:-2][::-1]]
        return latent, feats


class Encoder(nn.Module):
    def __init__(self, size: int, latent_dim: int, channels: dict):
        super().__init__()
        self.net_app = EncoderApp(size, latent_dim, channels)

    def forward(self, x):
        return self.net_app(x)

    def latent(self, x) -> torch.Tensor:
        return self.net_app(x, with_feats=False)[0]
