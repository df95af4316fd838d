"""Flow-field synthesis decoder G with ToFlow/ToRGB and the expression block EEM (docs/design.md §2.5–2.6).

The decoder warps the *source* feature maps with flow fields predicted from the motion latent z,
level by level (8×8 → size). Everything that depends on the source alone (the EEM's convolution
and instance norm of the source features) can be computed once per clip: `prepare_source` does
that, and `forward` accepts its result in place of raw features.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import ConstantInput, ConvLayer, ModulatedConv2d, StyledConv, Upsample
from ..nn.ops import cached_constant

IN_EPS = 1e-5


_GRIDS: Dict[tuple, torch.Tensor] = {}


def identity_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """[1,H,W,2] sampling grid of linspace(−1,1) coordinates (x first), built in float64.

    Cached per (size, dtype, device): every ToFlow of every step needs it (rebuilding it was a
    dozen aten calls each time).
    """
    def make():
        ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float64, device=like.device)
        xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float64, device=like.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack((gx, gy), dim=-1).to(torch.float32).to(like.dtype)[None]

    return cached_constant(_GRIDS, (height, width, like.dtype, like.device), make)


def batch_broadcast(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x.expand(batch, *x.shape[1:]) if x.shape[0] != batch else x


class ToFlow(nn.Module):
    """Flow + occlusion mask from x and z; warps the (expression-enhanced) source feature."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)

    def forward(self, x, style, feat, logits_prev=None, need_next: bool = True):
        """(warp, next activation = warp + x·(1−mask), logits); `need_next=False` skips the blend
        (the last level's activation feeds nothing)."""
        logits = self.conv(x, style) + self.bias
        if logits_prev is not None:
            logits = logits + self.upsample(logits_prev)
        batch, _, h, w = logits.shape
        # The warp runs in float32 whatever the model's dtype: a bf16 grid is off by up to a pixel
        # at 256² (8-bit mantissa) and the CPU's bf16 grid_sample returned NaNs (scripts/bench.py precision).
        flow = logits[:, 0:2].float()
        grid = torch.tanh(flow).permute(0, 2, 3, 1) + identity_grid(h, w, flow)
        mask = torch.sigmoid(logits[:, 2:3])
        feat = batch_broadcast(feat, batch)
        # align_corners=False on a linspace grid is what the published model does (docs/design.md §2.5).
        warp = F.grid_sample(feat.float(), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False).to(x.dtype)
        if torch.is_grad_enabled():
            warp = warp * mask
            return warp, (warp + x * (1 - mask) if need_next else None), logits
        warp.mul_(mask)
        return warp, (torch.addcmul(warp, x, 1 - mask) if need_next else None), logits


class ToRGB(nn.Module):
    """√2·lReLU(conv(warp) + b₁) + b₂ (+ upsampled previous RGB); unbounded, no tanh."""

    def __init__(self, in_ch: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample()
        self.conv = ConvLayer(in_ch, 3, 1)

    def forward(self, x, skip=None):
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ADAIN(nn.Module):
    """IN(x)·(1+γ(e)) + β(e) with plain-Linear MLPs on the 512-d expression latent."""

    def __init__(self, channels: int, style_dim: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    @staticmethod
    def normalize(x):
        return F.instance_norm(x, eps=IN_EPS)

    def modulate(self, normalized, e):
        actv = self.mlp_shared(e)
        gamma = self.mlp_gamma(actv)[:, :, None, None]
        beta = self.mlp_beta(actv)[:, :, None, None]
        return normalized * (1 + gamma) + beta

    def forward(self, x, e):
        return self.modulate(self.normalize(x), e)


class EEM(nn.Module):
    """Emotion Enhancement Module, released behaviour: x + ADAIN₂(conv2(x), e).

    conv1/norm1 (the first branch, overwritten in the published code) are kept so checkpoints
    load, but never computed: they influence nothing.
    """

    def __init__(self, channels: int, style_dim: int, hidden: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = ADAIN(channels, style_dim, hidden)
        self.norm2 = ADAIN(channels, style_dim, hidden)
        self.actvn = nn.LeakyReLU(0.01)

    def source_term(self, x):
        """The part that depends on the source only: IN(conv2(x))."""
        return self.norm2.normalize(self.conv2(x))

    def enhance(self, x, normalized, e):
        if e is None:
            return x
        return x + self.norm2.modulate(normalized, e)

    def forward(self, x, e, compute_dead_branch: bool = False):
        if e is None:
            return x
        if compute_dead_branch:
            # The published call pattern computes this branch and overwrites it (benchmarks only).
            self.actvn(self.norm1(self.conv1(x), e))
        return self.enhance(x, self.source_term(x), e)

    def dead_parameters(self):
        """Parameters of the discarded first branch (freeze them in training; docs/design.md §2.6)."""
        return list(self.conv1.parameters()) + list(self.norm1.parameters())


class SourceFeatures(list):
    """The source feature pyramid plus per-clip caches (a list, so it is usable as plain feats)."""

    def __init__(self, feats: Sequence[torch.Tensor], eem_terms: Optional[List[torch.Tensor]] = None):
        super().__init__(feats)
        self.eem_terms = eem_terms
        self._enhanced = None  # (expression latent, enhanced maps) for a constant expression

    def enhanced_for(self, exp_latent: torch.Tensor, compute):
        """Enhanced maps for one (batch-1) expression, computed once while it stays the same."""
        cached = self._enhanced
        if cached is not None and cached[0].shape == exp_latent.shape and torch.equal(cached[0], exp_latent):
            return cached[1]
        maps = compute()
        if not torch.is_grad_enabled():
            self._enhanced = (exp_latent.detach().clone(), maps)
        return maps


class Synthesis(nn.Module):
    """`dec`: constant input, styled convs, ToFlow/ToRGB per level, optional EEM per level."""

    def __init__(self, size: int, style_dim: int, channels: dict, expression: bool, adain_hidden: int = 128):
        super().__init__()
        self.size = size
        self.levels = int(math.log2(size)) - 2
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim)
        self.to_rgb1 = ToRGB(channels[4], upsample=False)  # loaded, never used (docs/design.md §2.5)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = channels[4]
        for k in range(self.levels):
            out_ch = channels[2 ** (k + 3)]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch))
            self.to_flows.append(ToFlow(out_ch, style_dim))
            in_ch = out_ch
        self.fineadainresblock = None
        if expression:
            self.fineadainresblock = nn.ModuleList(
                EEM(channels[2 ** (k + 3)], style_dim, adain_hidden) for k in range(self.levels)
            )
        self.upsamples = nn.ModuleList()  # present (empty) in the official module

    @property
    def has_eem(self) -> bool:
        return self.fineadainresblock is not None

    def prepare_source(self, feats: Sequence[torch.Tensor]) -> SourceFeatures:
        """Compute the per-clip EEM terms once; the result can be passed as `feats` to forward."""
        if isinstance(feats, SourceFeatures) and (feats.eem_terms is not None or not self.has_eem):
            return feats
        terms = [eem.source_term(f) for eem, f in zip(self.fineadainresblock, feats)] if self.has_eem else None
        return SourceFeatures(feats, terms)

    def expression_maps(self, feats, exp_latent, compute_dead_branch: bool = False) -> List[torch.Tensor]:
        """The source features each level warps: EEM-enhanced by d_e (full model) or as they are."""
        if not self.has_eem or exp_latent is None:
            return list(feats)
        if compute_dead_branch:
            return [eem(f, exp_latent, compute_dead_branch=True) for eem, f in zip(self.fineadainresblock, feats)]
        terms = getattr(feats, "eem_terms", None)

        def compute():
            return [eem.enhance(f, terms[k] if terms is not None else eem.source_term(f), exp_latent)
                    for k, (eem, f) in enumerate(zip(self.fineadainresblock, feats))]

        if isinstance(feats, SourceFeatures) and exp_latent.shape[0] == 1:
            return feats.enhanced_for(exp_latent, compute)
        return compute()

    def forward(self, z: torch.Tensor, feats: Sequence[torch.Tensor], exp_latent: Optional[torch.Tensor] = None,
                compute_dead_branch: bool = False):
        """`compute_dead_branch` reproduces the official per-frame cost (benchmarks); output is unchanged."""
        if len(feats) != self.levels:
            raise ValueError(f"expected {self.levels} feature maps, got {len(feats)}")
        batch = z.shape[0]
        x = self.conv1(self.input(batch), z)
        maps = self.expression_maps(feats, exp_latent, compute_dead_branch)
        rgb = logits = None
        for k in range(self.levels):
            x = self.convs[2 * k](x, z)
            x = self.convs[2 * k + 1](x, z)
            warp, x, logits = self.to_flows[k](x, z, maps[k], logits, need_next=k + 1 < self.levels)
            rgb = self.to_rgbs[k](warp, rgb)
        return rgb
