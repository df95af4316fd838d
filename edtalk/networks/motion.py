"""Motion banks and navigation heads (spec §2.3–2.4)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn.layers import EqualLinear

QR_EPS = 1e-8


def orthonormal_bases(weight: torch.Tensor) -> torch.Tensor:
    """Reduced Householder QR of (W + 1e-8), LAPACK sign convention (never sign-normalised).

    Computed in float32; on CUDA/MPS the decomposition runs on the CPU so every device gets the
    same signs, and gradients flow through it when `weight` requires grad.
    """
    w = weight.float() + QR_EPS
    if w.device.type != "cpu":
        q = torch.linalg.qr(w.cpu(), mode="reduced")[0].to(weight.device)
    else:
        q = torch.linalg.qr(w, mode="reduced")[0]
    return q


def affine_mlp(in_dim: int, hidden: int, out_dim: int, depth: int) -> nn.Sequential:
    """EqualLinear chain without activations (the official MLPs are affine)."""
    dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
    return nn.Sequential(*[EqualLinear(a, b) for a, b in zip(dims[:-1], dims[1:])])


def latent_offset(alpha: Optional[torch.Tensor], bases: torch.Tensor) -> Optional[torch.Tensor]:
    """d = Σ_i α_i q_i for α [B,n] and the bank's n columns [D,n] → [B,D]."""
    if alpha is None:
        return None
    dtype = torch.promote_types(alpha.dtype, bases.dtype)
    return alpha.to(dtype) @ bases.to(dtype).t()
