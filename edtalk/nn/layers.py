"""Building blocks (docs/design.md §2.1). Module and parameter names follow the official state dicts, so
official checkpoints load by key without renaming.

Modulated convolutions modulate the *input* and demodulate the *output* with one shared weight,
which equals the per-sample weight form of the spec exactly in real arithmetic and lets a batch
of frames run as one ordinary convolution (the per-sample grouped form is kept for reference in
`ModulatedConv2d.forward_grouped`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import SQRT2, cached_constant, fir_filter, fir_weight, fused_leaky_relu, make_blur_kernel, scalar

_FAST_INFERENCE = True


@contextmanager
def reference_ops():
    """Run the layers exactly as written in the spec (no folded gains, no fused weights).

    Used by the benchmark's reference path and by tests that compare the two paths.
    """
    global _FAST_INFERENCE
    previous, _FAST_INFERENCE = _FAST_INFERENCE, False
    try:
        yield
    finally:
        _FAST_INFERENCE = previous


def fast_inference() -> bool:
    """Inference-only rewrites (folded √2 gains and biases, in-place activations) are allowed:
    no autograd is recording and `reference_ops()` is not active."""
    return _FAST_INFERENCE and not torch.is_grad_enabled()


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for sums of squares (fp16/bf16 overflow or lose them)."""
    return torch.promote_types(dtype, torch.float32)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class EqualConv2d(nn.Module):
    """Conv with N(0,1) weights scaled by 1/√(in·k²) at run time."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x):
        weight = self.weight * scalar(self.scale, self.weight)
        return F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with N(0,1) weights scaled by 1/√in; optional fused lReLU (discriminator only)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1.0 / math.sqrt(in_dim)
        self.activation = activation

    def forward(self, x):
        weight = self.weight * scalar(self.scale, self.weight)
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), self.bias)
        return F.linear(x, weight, self.bias)


class _FIR(nn.Module):
    """A module with a FIR `kernel` buffer; the depthwise conv weight built from it is cached
    (flipping and casting it on every call cost three aten calls per blur)."""

    def fir(self, x, up: int = 1):
        cache = self.__dict__.setdefault("_fir_cache", {})
        key = (id(self.kernel), self.kernel._version, x.shape[1], x.dtype, x.device)
        weight = cached_constant(cache, key, lambda: fir_weight(self.kernel, x.shape[1], x))
        return fir_filter(x, weight, up=up, pad=self.pad)


class Blur(_FIR):
    def __init__(self, pad, upsample_factor: int = 1, taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps, upsample_factor))
        self.pad = tuple(pad)

    def forward(self, x):
        return self.fir(x)


class Upsample(_FIR):
    """×2 FIR upsampling used by the RGB/flow skips: up 2, pads (2,1), kernel ×4."""

    def __init__(self, factor: int = 2, taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps, factor))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return self.fir(x, up=self.factor)


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [FusedLeakyReLU]; Sequential indices give the official key suffixes."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        layers = []
        if downsample:
            p = 4 - 2 + (kernel_size - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)

    def forward(self, x, gain: float = 1.0):
        """`gain` scales the output; folded into the weights on the fast path (lReLU is
        positively homogeneous, so gain·√2·lrelu(y+b) = lrelu(gain·√2·(y+b)))."""
        if not fast_inference():
            for layer in self:
                x = layer(x)
            return x * gain if gain != 1.0 else x
        layers = list(self)
        if isinstance(layers[0], Blur):
            x = layers[0](x)
            layers = layers[1:]
        conv = layers[0]
        if len(layers) == 1:  # no activation
            bias = conv.bias * gain if conv.bias is not None else None
            return F.conv2d(x, conv.weight * (conv.scale * gain), bias, conv.stride, conv.padding)
        g = gain * SQRT2
        y = F.conv2d(x, conv.weight * (conv.scale * g), layers[1].bias.view(-1) * g, conv.stride, conv.padding)
        return F.leaky_relu_(y, 0.2)


class ResBlock(nn.Module):
    """Downsampling residual block: (conv2(conv1(x)) + skip(x)) / √2."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, bias=False, activate=False)

    def forward(self, x):
        if fast_inference():
            inv = 1 / math.sqrt(2)
            return self.conv2(self.conv1(x), gain=inv).add_(self.skip(x, gain=inv))
        y = self.conv2(self.conv1(x)) + self.skip(x)
        return y * scalar(1 / math.sqrt(2), y)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv (docs/design.md §2.1). Weight [1,out,in,k,k]; modulation bias starts at 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.upsample = upsample
        if upsample:
            p = 4 - 2 - (kernel_size - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size ** 2)
        self.demodulate = demodulate
        self.padding = kernel_size // 2

    def styles(self, style):
        return self.modulation(style)

    def output_scale(self, s):
        """scale·demod per (sample, out channel) [B,out] for a convolution with the raw weight:
        scale/√(Σ_{in,k,k}(W·s·scale)² + 1e-8) = 1/√(Σ(W·s)² + 1e-8/scale²), one addmm.  Summed
        in float32 at least: in fp16 the sum of squares can overflow."""
        acc = _accumulation_dtype(self.weight.dtype)
        if torch.is_grad_enabled():
            w = self.weight[0]
            w2 = ((w if w.dtype == acc else w.to(acc)) ** 2).sum(dim=(2, 3))  # [out, in]
        else:
            w2 = self.weight_energy()
        s = s if s.dtype == acc else s.to(acc)
        coeff = torch.rsqrt(torch.addmm(scalar(1e-8 / self.scale ** 2, s), s * s, w2.t()))
        return coeff if coeff.dtype == self.weight.dtype else coeff.to(self.weight.dtype)

    def weight_energy(self) -> torch.Tensor:
        """Σ_{k,k} W² per (out, in) [out,in]; cached while the weight is unchanged (inference)."""
        key = (self.weight.data_ptr(), self.weight._version, self.weight.dtype, self.weight.device)
        cached = getattr(self, "_energy_cache", None)
        if cached is None or cached[0] != key:
            acc = _accumulation_dtype(self.weight.dtype)
            cached = (key, (self.weight[0].detach().to(acc) ** 2).sum(dim=(2, 3)))
            self._energy_cache = cached
        return cached[1]

    def fused_weight(self, s, gain: float = 1.0):
        """Per-sample weight W·s·scale (·demod)·gain for one style s [1,in] → [out,in,k,k].

        The per-(out,in) factor is built first (small), so the big weight is touched once.
        """
        s = s.view(1, -1).to(_accumulation_dtype(s.dtype)) * self.scale  # fp16 sums of squares overflow
        if self.demodulate:
            demod = torch.rsqrt((s * s) @ self.weight_energy().t() + 1e-8)  # [1,out]
            factor = demod.t() * s * gain  # [out,in]
        else:
            factor = s.expand(self.out_ch, -1) * gain
        return self.weight[0] * factor[:, :, None, None].to(self.weight.dtype)

    def forward_single_style(self, x, s, bias=None, gain: float = 1.0):
        """One style for the whole batch: a single convolution with the modulated weight."""
        w = self.fused_weight(s, gain)
        if self.upsample:
            y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=0)
            kernel = torch.flip(self.blur.kernel, (0, 1)).to(y.dtype)[None, None].expand(y.shape[1], 1, -1, -1)
            return F.conv2d(y, kernel, bias, padding=self.blur.pad[0], groups=y.shape[1])
        return F.conv2d(x, w, bias, padding=self.padding)

    def forward(self, x, style):
        return self.forward_styles(x, self.styles(style))

    def forward_styles(self, x, s):
        """Modulated conv for styles s [B_s, in] (after the modulation layer)."""
        if not _FAST_INFERENCE:
            return self.forward_grouped(x, s, styles_given=True)
        if fast_inference() and s.shape[0] == 1:
            return self.forward_single_style(x, s)
        batch = max(x.shape[0], s.shape[0])
        if self.demodulate:
            x = x * s.view(s.shape[0], -1, 1, 1)
        else:  # the weight's scale goes on the small style, not on the weight (one op fewer each way)
            x = x * (s * scalar(self.scale, s)).view(s.shape[0], -1, 1, 1)
        weight = self.weight[0]
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            x = x * self.output_scale(s).view(s.shape[0], -1, 1, 1)
        if self.upsample:
            x = self.blur(x)
        return x.expand(batch, *x.shape[1:]) if x.shape[0] != batch else x

    def forward_grouped(self, x, style, styles_given: bool = False):
        """The per-sample weight formulation of the spec (reference path)."""
        s = style if styles_given else self.styles(style)
        b = max(x.shape[0], s.shape[0])
        x, s = x.expand(b, *x.shape[1:]), s.expand(b, -1).reshape(b, 1, self.in_ch, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            energy = weight.to(_accumulation_dtype(weight.dtype)).pow(2).sum([2, 3, 4], keepdim=True)
            weight = weight * torch.rsqrt(energy + 1e-8).to(weight.dtype)
        weight = weight.view(b * self.out_ch, self.in_ch, self.kernel_size, self.kernel_size)
        h, w = x.shape[2:]
        x = x.reshape(1, b * self.in_ch, h, w)
        if self.upsample:
            weight = weight.view(b, self.out_ch, self.in_ch, self.kernel_size, self.kernel_size)
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, self.kernel_size, self.kernel_size)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=b)
            out = out.view(b, self.out_ch, *out.shape[2:])
            return self.blur(out)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.view(b, self.out_ch, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Loaded for key compatibility; noise is never given, so this is the identity (docs/design.md §2.1)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, demodulate=True, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style):
        if fast_inference():
            s = self.conv.styles(style)
            if s.shape[0] == 1:  # fold bias and √2 into the one modulated conv
                y = self.conv.forward_single_style(x, s, self.activate.bias.view(-1) * SQRT2, SQRT2)
                return F.leaky_relu_(y, 0.2)
            y = self.conv.forward_styles(x, s)
            return F.leaky_relu_(y.add_(self.activate.bias), 0.2).mul_(SQRT2)
        return self.activate(self.noise(self.conv(x, style)))


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)
