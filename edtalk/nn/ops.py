"""Reference ops of the StyleGAN2/LIA lineage in pure PyTorch (docs/design.md §2.1): no custom kernels."""
from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)

_SCALARS: Dict[tuple, torch.Tensor] = {}


def cached_constant(cache: Dict[tuple, torch.Tensor], key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`cache[key]`, made by `make()` the first time.  Constants made under inference_mode are
    kept apart from the others: an inference tensor can never enter autograd later."""
    key = key + (torch.is_inference_mode_enabled(),)
    t = cache.get(key)
    if t is None:
        t = cache[key] = make()
    return t


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """`value` as a cached 0-dim tensor of `like`'s dtype and device.

    `tensor * 0.5` wraps 0.5 in a float64 tensor and casts it on every call (four extra aten
    calls, forward and backward); a 0-dim tensor of the right dtype multiplies in one.
    """
    value = float(value)
    return cached_constant(_SCALARS, (value, like.dtype, like.device),
                           lambda: torch.tensor(value, dtype=like.dtype, device=like.device))


def make_blur_kernel(taps: Sequence[float] = (1, 3, 3, 1), upsample_factor: int = 1) -> torch.Tensor:
    """Separable FIR kernel k⊗k normalised to sum 1, times factor² after upsampling (docs/design.md §2.1)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    k = k / k.sum()
    return k * (upsample_factor ** 2)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample each channel of x [B,C,H,W].

    Order as in docs/design.md §2.1: insert up−1 zeros after every sample, pad `pad[0]` before and `pad[1]`
    after (negative crops), correlate with the flipped kernel, keep every `down`-th sample.
    """
    return fir_filter(x, fir_weight(kernel, x.shape[1], x), up, down, pad)


def fir_weight(kernel: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    """The depthwise conv weight [C,1,k,k] that applies `kernel` (flipped: conv2d correlates)."""
    weight = torch.flip(kernel, (0, 1)).to(dtype=like.dtype, device=like.device)
    return weight[None, None].expand(channels, 1, *kernel.shape)


def fir_filter(x: torch.Tensor, weight: torch.Tensor, up: int = 1, down: int = 1,
               pad: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """:func:`upfirdn2d` with the depthwise weight of :func:`fir_weight` already built."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 == p1 >= 0:
        # Symmetric zero padding is the convolution's own padding: no padded copy.
        x = F.conv2d(x, weight, padding=p0, groups=c)
    elif p0 >= 0 and p1 >= 0:
        # Pad both sides by the larger amount, then drop the outputs that only the extra padding made.
        big = max(p0, p1)
        x = F.conv2d(x, weight, padding=big, groups=c)
        x = x[:, :, big - p0: x.shape[2] - (big - p1), big - p0: x.shape[3] - (big - p1)]
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
    """√2·leaky_relu(x + b): bias first, then the activation, then the gain (docs/design.md §2.1)."""
    if bias.dim() == 1 and x.dim() > 2:
        bias = bias.view(1, -1, *([1] * (x.dim() - 2)))
    y = F.leaky_relu(x + bias, negative_slope)
    return y * scalar(scale, y)

