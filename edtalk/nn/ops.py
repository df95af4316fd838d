"""Reference ops of the StyleGAN2/LIA lineage in pure PyTorch (spec §2.1): no custom kernels."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_blur_kernel(taps: Sequence[float] = (1, 3, 3, 1), upsample_factor: int = 1) -> torch.Tensor:
    """Separable FIR kernel k⊗k normalised to sum 1, times factor² after upsampling (spec §2.1)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    k = k / k.sum()
    return k * (upsample_factor ** 2)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample each channel of x [B,C,H,W].

    Order as in spec §2.1: insert up−1 zeros after every sample, pad `pad[0]` before and `pad[1]`
    after (negative crops), correlate with the flipped kernel, keep every `down`-th sample.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    weight = torch.flip(kernel, (0, 1)).to(dtype=x.dtype, device=x.device)
    weight = weight[None, None].expand(c, 1, *kernel.shape)
    if p0 == p1 >= 0:
        # Symmetric zero padding is the convolution's own padding: no padded copy.
        x = F.conv2d(x, weight, padding=p0, groups=c)
    else:
        x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
        if p0 < 0 or p1 < 0:
            x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
        x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """√2·leaky_relu(x + b): bias first, then the activation, then the gain (spec §2.1)."""
    if bias.dim() == 1 and x.dim() > 2:
        bias = bias.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(x + bias, negative_slope) * scale

