"""Motion banks and navigation heads (docs/design.md §2.3–2.4)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn.layers import EqualLinear

QR_EPS = 1e-8


def orthonormal_bases(weight: torch.Tensor) -> torch.Tensor:
    """Reduced Householder QR of (W + 1e-8), LAPACK sign convention (never sign-normalised).

    Computed in float32 on the weight's own device, with gradients when `weight` requires them.
    On the CPU this is LAPACK itself; elsewhere the device solver's column signs are mapped onto
    LAPACK's (:func:`device_qr`), so every device gets the same bases without a host round trip
    (which would sync the forward and backward passes and rule out CUDA graphs).
    """
    w = weight.float() + QR_EPS
    if w.device.type == "cpu":
        return torch.linalg.qr(w, mode="reduced")[0]
    return device_qr(w)


def device_qr(w: torch.Tensor) -> torch.Tensor:
    """Q of `w` [m,n] from the device's QR with each column's sign set to LAPACK's convention."""
    q, r = torch.linalg.qr(w, mode="reduced")
    own = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
    return q * (own * householder_signs(w).to(q.dtype))


@torch.no_grad()
def householder_signs(w: torch.Tensor) -> torch.Tensor:
    """sign(diag R) of LAPACK's Householder QR (geqrf) of `w` [m,n], m ≥ n, on w's device.

    LAPACK reflects the column being reduced, x, onto β·e₁ with β = −sign(x₁)·‖x‖ (sign(0) = +),
    so r_ii has the sign opposite to x₁ at that step; replaying the reflections gives every x₁.
    A column with nothing below its diagonal (the last one of a square matrix) is not reflected:
    r_ii = x₁.  (Nor is one whose entries below the diagonal are exactly zero; W + 1e-8 never has that.)
    """
    a = w.detach().to(torch.float64).clone()
    signs = []
    m, n = a.shape
    for i in range(n):
        x = a[i:, i]
        positive = x[0] >= 0
        if i + 1 == m:
            signs.append(torch.where(positive, 1.0, -1.0))
            break
        signs.append(torch.where(positive, -1.0, 1.0))
        if i + 1 == n:
            break
        # v = x − β·e₁ with β = −sign(x₁)‖x‖; H = I − 2vvᵀ/vᵀv applied to the columns still to reduce
        v = x.clone()
        v[0] = x[0] + torch.where(positive, 1.0, -1.0) * torch.linalg.vector_norm(x)
        rest = a[i:, i + 1:]
        rest.sub_(torch.outer(v, (v @ rest) * (2.0 / (v @ v))))
    return torch.stack(signs).to(w.device)


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
