"""Paste generated face crops back into their original full frames through a soft face mask.

Signature (stable; the generation pipeline calls it one batch of frames at a time)::

    paste_back(original_frames, generated_faces, params, landmarks=None,
               feather=0.1, grow=0.1, forehead=0.3, chunk=16) -> uint8 [T,H,W,3]

- ``original_frames``: uint8 [T,H,W,3] full frames (or one [H,W,3] image reused for every face);
- ``generated_faces``: uint8 [T,S,S,3] generated crops, any S (the crop mapping is rescaled);
- ``params``: the CropParams (TemplateCrop / TubeCrop) of the crop, or a sequence of T of them
  (one per frame, e.g. a moving crop box);
- ``landmarks``: the 68 iBUG points (x, y) in pixel coordinates of the *generated* crop at size S,
  [68,2] for every frame or [T,68,2] per frame; None = the §7.1 template landmarks scaled to S
  (where the face sits in a template crop), moved onto the median detected face box for a tube
  crop (`default_landmarks`).

The mask is the convex hull of the jaw (0–16) and the brows (17–26) raised towards the forehead,
grown about its centre, with a smoothstep ramp inside its edge whose width is proportional to the
face size. Frame pixels outside the mask are returned bit-identical; a call depends only on its
own frames, so batches can be pasted independently.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InputError
from .align import TEMPLATE_68, TEMPLATE_SIZE
from .geometry import CropParams, apply

JAW, BROWS, NOSE_TOP, CHIN = slice(0, 17), slice(17, 27), 27, 8
# The same crop (and often the same mask) is pasted batch after batch.
_GEOMETRY_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_PLAN_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 4


def _to_crop_pixels(points: np.ndarray, k: float) -> np.ndarray:
    return (points + 0.5) * k - 0.5  # pixel-centre aligned, as resize_matrix


def template_landmarks(size: int) -> np.ndarray:
    """The §7.1 template's 68 points in pixel coordinates of a `size`² crop."""
    return _to_crop_pixels(TEMPLATE_68, size / float(TEMPLATE_SIZE))


# [D] Where dlib's HOG box (x1, y1, x2, y2) falls on a template-aligned 256² face (measured on a
# template crop): about the jaw's width, from just above the brows to just above the chin.
TEMPLATE_DETECTOR_BOX = (67.0, 82.0, 196.0, 211.0)
# [D] Without landmarks of the generated face, the template outline is enlarged by this much: a
# turned or off-centre face reaches past it (the astronaut's cheek, by ~15%). Too large only
# takes in more of the generated background, which reconstructs the source's.
FALLBACK_SLACK = 0.2


def default_landmarks(params: CropParams, size: int) -> np.ndarray:
    """Mask landmarks when none are given: the template scaled to the crop, or for a tube crop
    (whose face is not template-aligned) the template moved onto the tube's median face box."""
    template = template_landmarks(size)
    centre = template.mean(0)
    points = centre + (template - centre) * (1.0 + FALLBACK_SLACK)
    track = getattr(params, "track", None)
    if track is None or not np.isfinite(track).all():
        return points
    corners = params.frame_to_crop(np.median(track, axis=0)[:4].reshape(2, 2), size)
    tx1, ty1, tx2, ty2 = _to_crop_pixels(np.array(TEMPLATE_DETECTOR_BOX), size / float(TEMPLATE_SIZE))
    scale = np.mean((corners[1] - corners[0]) / np.array([tx2 - tx1, ty2 - ty1]))
    centre_t = np.array([tx1 + tx2, ty1 + ty2]) / 2.0
    return corners.mean(0) + (points - centre_t) * scale


def mask_outline(landmarks: np.ndarray, grow: float = 0.1, forehead: float = 0.3) -> np.ndarray:
    """Convex polygon [N,2] (x, y) around the face: jaw + brows raised by `forehead`·(chin→nose
    top distance), then scaled by 1+`grow` about the centre (room for an opening jaw)."""
    from scipy.spatial import ConvexHull, QhullError

    degenerate = InputError("face landmarks for the paste-back mask are degenerate (NaN or collapsed)")
    pts = np.asarray(landmarks, dtype=np.float64)
    up = pts[NOSE_TOP] - pts[CHIN]
    if not np.isfinite(pts).all() or not np.any(up):
        raise degenerate
    raised = pts[BROWS] + forehead * up  # `up` has the chin→nose-top length
    outline = np.concatenate([pts[JAW], raised])
    try:
        outline = outline[ConvexHull(outline).vertices]
    except QhullError:  # all points on one line
        raise degenerate from None
    centre = outline.mean(0)
    return centre + (outline - centre) * (1.0 + grow)


def face_mask(landmarks: np.ndarray, size: int, feather: float = 0.1, grow: float = 0.1,
              forehead: float = 0.3) -> np.ndarray:
    """[size,size] float mask in [0,1] of a crop: 0 outside the face outline (and at the crop
    border), rising to 1 over `feather`·face size inside it (face size = √ outline area)."""
    from scipy.ndimage import distance_transform_edt
    from skimage.draw import polygon2mask

    outline = mask_outline(landmarks, grow, forehead)
    inside = polygon2mask((size, size), outline[:, ::-1])  # (row, col) vertices
    # Distance to the nearest outside pixel, the crop border counting as outside.
    depth = distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    x, y = outline[:, 0], outline[:, 1]
    face_size = np.sqrt(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    width = max(feather * face_size, 1e-6)
    t = np.clip((depth - 0.5) / width, 0.0, 1.0)  # depth 0.5: the outline itself
    return t * t * (3.0 - 2.0 * t)


def _bilinear_taps(uv: np.ndarray, size: int):
    """Four flat indices (row·size + col) into the crop and their weights per point; taps clamped
    at the crop border."""
    u = np.clip(uv[:, 0], 0, size - 1)
    v = np.clip(uv[:, 1], 0, size - 1)
    u0 = np.minimum(np.floor(u).astype(np.int32), max(size - 2, 0))
    v0 = np.minimum(np.floor(v).astype(np.int32), max(size - 2, 0))
    fu, fv = (u - u0).astype(np.float32)[:, None], (v - v0).astype(np.float32)[:, None]
    u1, v1 = np.minimum(u0 + 1, size - 1), np.minimum(v0 + 1, size - 1)
    weights = [(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv]
    taps = [v0 * size + u0, v0 * size + u1, v1 * size + u0, v1 * size + u1]
    return taps, weights


def _crop_geometry(params: CropParams, size: int, frame_shape):
    """Every frame pixel the crop covers: its (row, col) and bilinear taps into the crop. Shared by
    all the masks pasted through one crop (per-frame landmarks change the mask only)."""
    height, width = frame_shape
    to_frame = params.matrix_for(size)
    edge = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    corners = apply(to_frame, edge)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    if x0 > x1 or y0 > y1:
        return None
    # Frame pixel → crop coordinates, by broadcasting the affine map over the region's axes.
    to_crop = np.linalg.inv(to_frame)
    cols, rows = np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64)
    u = to_crop[0, 0] * cols[None, :] + to_crop[0, 1] * rows[:, None] + to_crop[0, 2]
    v = to_crop[1, 0] * cols[None, :] + to_crop[1, 1] * rows[:, None] + to_crop[1, 2]
    in_crop = ((u >= -0.5) & (u <= size - 0.5) & (v >= -0.5) & (v <= size - 0.5)).ravel()
    ys, xs = np.divmod(np.flatnonzero(in_crop), x1 - x0 + 1)
    uv = np.stack([u.ravel()[in_crop], v.ravel()[in_crop]], axis=1)
    taps, weights = _bilinear_taps(uv, size)
    return (ys + y0).astype(np.int32), (xs + x0).astype(np.int32), taps, weights


def _sampling_plan(geometry, mask: np.ndarray):
    """The geometry's pixels under the mask, with their blend weight alpha."""
    if geometry is None:
        return None
    ys, xs, taps, weights = geometry
    flat = mask.astype(np.float32).ravel()
    alpha = sum(w[:, 0] * flat[t] for t, w in zip(taps, weights))
    keep = np.flatnonzero(alpha > 0)
    if keep.size == 0:
        return None
    return ys[keep], xs[keep], [t[keep] for t in taps], [w[keep] for w in weights], alpha[keep][:, None]


def _cached(cache: OrderedDict, key, make):
    if key not in cache:
        cache[key] = make()
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def _plan_for(params: CropParams, size: int, frame_shape, landmarks: np.ndarray, feather, grow, forehead):
    crop_key = (params.matrix_for(size).tobytes(), size, tuple(frame_shape))
    geometry = _cached(_GEOMETRY_CACHE, crop_key, lambda: _crop_geometry(params, size, frame_shape))
    mask_key = crop_key + (landmarks.tobytes(), feather, grow, forehead)
    return _cached(_PLAN_CACHE, mask_key, lambda: _sampling_plan(
        geometry, face_mask(landmarks, size, feather, grow, forehead)))


def _blend(out: np.ndarray, faces: np.ndarray, plan, chunk: int) -> None:
    """out[:, plan pixels] ← alpha·face + (1−alpha)·out, in place, `chunk` frames at a time."""
    if plan is None:
        return
    ys, xs, taps, weights, alpha = plan
    for s in range(0, len(faces), chunk):
        block = faces[s:s + chunk].reshape(len(faces[s:s + chunk]), -1, 3)
        face = sum(w * block[:, t].astype(np.float32) for t, w in zip(taps, weights))
        base = out[s:s + chunk, ys, xs].astype(np.float32)
        out[s:s + chunk, ys, xs] = np.clip(np.rint(alpha * face + (1.0 - alpha) * base), 0, 255).astype(np.uint8)


def _check_inputs(original_frames, generated_faces):
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
    return originals, faces


def _per_frame(value, count: int, what: str) -> list:
    if len(value) != count:
        raise InputError(f"paste-back needs one {what} per face: {len(value)} for {count} faces")
    return list(value)


def paste_back(original_frames: np.ndarray, generated_faces: np.ndarray,
               params: Union[CropParams, Sequence[CropParams]], landmarks: Optional[np.ndarray] = None,
               feather: float = 0.1, grow: float = 0.1, forehead: float = 0.3, chunk: int = 16) -> np.ndarray:
    """Blend generated square faces into their original frames through a soft face mask.

    See the module docstring for the arguments. `feather` is the ramp width as a fraction of
    the face size, `grow` the outline's enlargement, `forehead` how far above the brows it
    reaches (fraction of the chin→nose-top distance).

    Returns:
        uint8 [T,H,W,3]: the originals with the faces blended in (a new array).
    """
    originals, faces = _check_inputs(original_frames, generated_faces)
    count, size = len(faces), faces.shape[1]
    per_params = _per_frame(params, count, "crop") if not isinstance(params, CropParams) else [params] * count
    for p in {id(p): p for p in per_params}.values():
        if tuple(originals.shape[1:3]) != tuple(p.frame_shape):
            raise InputError(f"original frames are {originals.shape[2]}x{originals.shape[1]} but the crop was made "
                             f"on {p.frame_shape[1]}x{p.frame_shape[0]} frames")
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float64)
    elif isinstance(params, CropParams):
        points = default_landmarks(params, size)
    else:
        points = np.stack([default_landmarks(p, size) for p in per_params])
    if points.shape[-2:] != (68, 2) or points.ndim not in (2, 3):
        raise InputError(f"paste-back landmarks must be [68,2] or [T,68,2] crop pixels, got {points.shape}")
    per_points = _per_frame(points, count, "landmark set") if points.ndim == 3 else [points] * count

    out = np.array(originals, dtype=np.uint8, copy=True)
    start = 0
    while start < count:  # runs of frames sharing one crop and one mask share one plan
        stop = start + 1
        while (stop < count and per_params[stop] is per_params[start]
               and (per_points[stop] is per_points[start] or np.array_equal(per_points[stop], per_points[start]))):
            stop += 1
        plan = _plan_for(per_params[start], size, originals.shape[1:3], per_points[start], feather, grow, forehead)
        _blend(out[start:stop], faces[start:stop], plan, chunk)
        start = stop
    return out
