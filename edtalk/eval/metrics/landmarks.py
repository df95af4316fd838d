"""Landmark distances M-LMD / F-LMD (EAT's ``test_lmd.py``).

Generated and ground-truth landmark sequences are paired by EAT's linspace (⌊i·n/m⌋, see
:func:`linspace_pairs`) to the shorter length; each landmark set (mouth 48–67, or all 68) is
centred by its own mean, so a global head shift costs nothing and only shape differences count;
per frame the mean Euclidean distance over the set's points; then the mean over frames where both
have landmarks (EAT skips the others).  Dataset value: mean over videos with a value.

The unit is the pixel of the frames the landmarks come from: EAT measures on its 128² aligned
crops (mouth ≈ 42 px wide), so values from 256² frames read larger.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

MOUTH = np.arange(48, 68)
FACE = np.arange(68)
LANDMARK_SETS = {"m_lmd": MOUTH, "f_lmd": FACE}


def linspace_pairs(n_pred: int, n_gt: int) -> tuple:
    """Frame indices pairing two sequences at the shorter length n: ⌊linspace(0, total, n,
    endpoint=False)⌋ on each side (EAT's pairing for PSNR/SSIM, LMD and FID)."""
    n = min(n_pred, n_gt)
    pick = lambda total: np.linspace(0, total, n, endpoint=False).astype(np.int32).astype(np.int64)  # noqa: E731
    return pick(n_pred), pick(n_gt)


def lmd_frames(pred: np.ndarray, gt: np.ndarray, points=MOUTH) -> np.ndarray:
    """Per-frame LMD [T'] of landmark sequences [T1,68,2] and [T2,68,2]; NaN where either lacks a face."""
    ip, ig = linspace_pairs(len(pred), len(gt))
    p = np.asarray(pred, np.float64)[ip][:, points]
    g = np.asarray(gt, np.float64)[ig][:, points]
    p = p - p.mean(axis=1, keepdims=True)
    g = g - g.mean(axis=1, keepdims=True)
    return np.linalg.norm(p - g, axis=2).mean(axis=1)


def lmd(pred: np.ndarray, gt: np.ndarray, points=MOUTH) -> Optional[float]:
    """Mean LMD over valid frames; None when no frame has landmarks on both sides."""
    per_frame = lmd_frames(pred, gt, points)
    valid = np.isfinite(per_frame)
    return float(per_frame[valid].mean()) if valid.any() else None
