"""Paste generated face crops back into their original full frames with a feathered mask."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .geometry import CropParams, apply


def feather_mask(size: int, feather: float = 0.1) -> np.ndarray:
    """[size,size] float mask: 1 inside, a smoothstep ramp to 0 over `feather`·size at the borders."""
    u = np.arange(size, dtype=np.float64)
    return _ramp(u[None, :], u[:, None], size, feather)


def _ramp(u: np.ndarray, v: np.ndarray, size: int, feather: float) -> np.ndarray:
    # Distance (in crop pixels) from the crop's outer edge; negative outside the crop.
    dist = np.minimum(np.minimum(u + 0.5, size - 0.5 - u), np.minimum(v + 0.5, size - 0.5 - v))
    if feather <= 0:
        return (dist > 0).astype(np.float64)
    t = np.clip(dist / (feather * size), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sampling_plan(params: CropParams, size: int, frame_shape, feather: float):
    """Frame pixels covered by the crop, with their bilinear taps into the crop and blend alpha."""
    height, width = frame_shape
    to_frame = params.matrix_for(size)
    corners = apply(to_frame, np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]]))
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
    if x0 > x1 or y0 > y1:
        return None
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    ys, xs = ys.ravel(), xs.ravel()
    uv = apply(np.linalg.inv(to_frame), np.stack([xs, ys], axis=1).astype(np.float64))
    alpha = _ramp(uv[:, 0], uv[:, 1], size, feather)
    keep = alpha > 0
    xs, ys, uv, alpha = xs[keep], ys[keep], uv[keep], alpha[keep]
    # Bilinear taps, clamped at the crop border (alpha is ~0 there anyway).
    u = np.clip(uv[:, 0], 0, size - 1)
    v = np.clip(uv[:, 1], 0, size - 1)
    u0 = np.minimum(np.floor(u).astype(int), size - 2) if size > 1 else np.zeros_like(u, dtype=int)
    v0 = np.minimum(np.floor(v).astype(int), size - 2) if size > 1 else np.zeros_like(v, dtype=int)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    u1, v1 = np.minimum(u0 + 1, size - 1), np.minimum(v0 + 1, size - 1)
    weights = [((1 - fu) * (1 - fv)), (fu * (1 - fv)), ((1 - fu) * fv), (fu * fv)]
    taps = [(v0, u0), (v0, u1), (v1, u0), (v1, u1)]
    return ys, xs, taps, [w.astype(np.float32) for w in weights], alpha.astype(np.float32)[:, None]


def paste_back(original_frames: np.ndarray, generated_faces: np.ndarray, params: CropParams,
               feather: float = 0.1, chunk: int = 16) -> np.ndarray:
    """Warp generated square faces back into their original frames.

    Args:
        original_frames: uint8 [T,H,W,3] (or one [H,W,3] image reused for every face).
        generated_faces: uint8 [T,S,S,3]; any S (the crop mapping is rescaled from `params`).
        params: the TemplateCrop / TubeCrop returned by crop_image, crop_video or face_tube.
        feather: width of the soft border, as a fraction of the crop side.

    Returns:
        uint8 [T,H,W,3]: the originals with the faces blended in.
    """
    faces = np.asarray(generated_faces)
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[1] != faces.shape[2] or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise InputError(f"generated faces must be square uint8 frames [T,S,S,3], got {faces.dtype} {faces.shape}")
    originals = np.asarray(original_frames)
    if originals.ndim == 3:
        originals = np.broadcast_to(originals, (len(faces),) + originals.shape)
    if originals.ndim != 4 or originals.shape[-1] != 3 or originals.dtype != np.uint8:
        raise InputError(f"original frames must be uint8 [T,H,W,3], got {originals.dtype} {originals.shape}")
    if len(originals) != len(faces):
        raise InputError(f"paste-back needs one original frame per face: {len(originals)} frames, {len(faces)} faces")
    if tuple(originals.shape[1:3]) != tuple(params.frame_shape):
        raise InputError(f"original frames are {originals.shape[2]}x{originals.shape[1]} but the crop was made "
                         f"on {params.frame_shape[1]}x{params.frame_shape[0]} frames")

    out = np.array(originals, dtype=np.uint8, copy=True)
    plan = _sampling_plan(params, faces.shape[1], originals.shape[1:3], feather)
    if plan is None:
        return out
    ys, xs, taps, weights, alpha = plan
    for s in range(0, len(faces), chunk):
        block = faces[s:s + chunk].astype(np.float32)
        face = sum(w * block[:, v, u] for (v, u), w in zip(taps, weights))
        base = out[s:s + chunk, ys, xs].astype(np.float32)
        blend = alpha * face + (1.0 - alpha) * base
        out[s:s + chunk, ys, xs] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out
