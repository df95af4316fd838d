"""StyleGAN2 discriminator (docs/design.md §2.8), used in training."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import DiscriminatorConfig
from ..modeling import PretrainedModel
from ..nn.layers import ConvLayer, EqualLinear, ResBlock


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append the mean (over C,H,W) biased std across groups of G samples as one channel."""
    b, c, h, w = x.shape
    group = min(b, group_size)
    if b % group:
        raise ValueError(f"batch {b} is not divisible by the stddev group {group}")
    y = x.reshape(group, b // group, 1, c, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4)).squeeze(1)  # [b//group]
    y = y.view(b // group, 1, 1, 1).repeat(group, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module, PretrainedModel):
    model_type, label = "discriminator", "discriminator"
    config_classes = {"config": DiscriminatorConfig}

    def __init__(self, config: DiscriminatorConfig = None):
        super().__init__()
        self.config = config or DiscriminatorConfig()
        size, ch = self.config.size, self.config.channels
        convs = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(int(math.log2(size)), 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation=True),
            EqualLinear(ch[4], 1),
        )

    def forward(self, x):
        out = minibatch_stddev(self.convs(x), self.config.stddev_group)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))
