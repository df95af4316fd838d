"""Geometry shared by the crops and paste-back: similarity fitting and crop↔frame mappings.

Convention: pixel centres are integers (pixel (0,0) covers [-0.5,0.5]²); points are (x, y).
A crop is described by a 3×3 matrix mapping crop pixel coordinates to frame pixel coordinates,
so "each output pixel samples the input at T(output)" (docs/design.md §7.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src → dst.

    Returns the 3×3 homogeneous matrix T minimising Σ‖dst − T(src)‖² (Umeyama 1991).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching point sets [N,D] with N>=2, got {src.shape} and {dst.shape}")
    n, dim = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / n
    u, sig, vt = np.linalg.svd(cov)
    # Flip the weakest axis when the best orthogonal map would be a reflection.
    sign = np.ones(dim)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    var_s = (s_c ** 2).sum() / n
    scale = (sig * sign).sum() / var_s if (with_scale and var_s > 0) else 1.0
    out = np.eye(dim + 1)
    out[:dim, :dim] = scale * rot
    out[:dim, dim] = mu_d - scale * rot @ mu_s
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3×3 homogeneous (affine) matrix to points [N,2]."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def resize_matrix(from_size: int, to_size: int) -> np.ndarray:
    """Map pixel coords of a `to_size` image to those of the `from_size` image it was resized
    from (pixel-centre aligned, as PIL/ffmpeg resizes are)."""
    k = from_size / to_size
    return np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5], [0.0, 0.0, 1.0]])


@dataclass
class CropParams:
    """How a square face crop sits in its original frame: kept for paste-back.

    `matrix` maps crop pixel coordinates at `size` to frame pixel coordinates; `frame_shape` is
    the original (H, W). Subclasses say how the crop was made.
    """

    matrix: np.ndarray
    size: int
    frame_shape: Tuple[int, int]

    def matrix_for(self, size: int) -> np.ndarray:
        """The crop→frame matrix for the same crop resized to `size`² (e.g. 64² tiny models)."""
        if int(size) == self.size:
            return self.matrix.copy()
        return self.matrix @ resize_matrix(self.size, int(size))

    def crop_to_frame(self, points: np.ndarray, size: int = None) -> np.ndarray:
        """Crop pixel coordinates (x, y) → original frame coordinates."""
        return apply(self.matrix_for(size or self.size), points)

    def frame_to_crop(self, points: np.ndarray, size: int = None) -> np.ndarray:
        """Original frame coordinates → crop pixel coordinates (the inverse mapping)."""
        return apply(np.linalg.inv(self.matrix_for(size or self.size)), points)
