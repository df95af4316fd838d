"""SynthTalk face model: identities, landmark deformation, pose warp, SDF rasteriser, voice.

Landmarks first, pixels from landmarks:

1. the canonical face is the 68-point template of docs/design.md §7.1 (a 256 frame);
2. identity parameters reshape it (face width/height, eye spacing and size, nose, mouth);
3. mouth [open, width, round] and expression [brow_raise, brow_furrow, eyelid, cheek,
   corner_curve, corner_asym] + blink move the points (:func:`deform_landmarks`);
4. the pose [yaw, pitch, roll, tx, ty, scale] maps canonical points to the frame
   (:func:`pose_forward`): a smooth depth bump z(c) shifts points by (sin yaw, sin pitch)·z
   (near points move most, so the face turns), foreshortening cos yaw / cos pitch, then roll,
   scale and translation.  Pixels are drawn by mapping every output pixel back to canonical
   coordinates (:func:`pose_inverse`, fixed-point iteration of the same map) and evaluating signed
   distance fields of shapes built from the deformed landmarks, so the saved landmarks agree with
   the pixels to a fraction of a pixel.
5. optional *turn cues* (``turn_cues=True``, ``--turn-cues``; off by default, so trees, the
   shipped models' data and every pinned pixel stay as they were): a yaw or pitch turn then also
   reads as a turn of a head, not only as inner features sliding sideways.  (a) The ears, the side
   of the head (the face outline, drawn under the face) and the hair behind the head are layers
   behind the pivot (:data:`EAR_DEPTH`, :data:`HAIR_DEPTH`): they move against the face, so in a
   turn the side of the head and one ear come out from behind the cheek while the other ear hides
   behind it, and the hair rim widens on one side and narrows on the other (pitch: the ears drop
   or rise against the eyes, the hair rim above the forehead grows or shrinks).  The neck lies on
   the turning axis (:data:`NECK_DEPTH`): the chin turns over it, and looking up shows more of
   it.  (b) A frame-fixed light (:data:`TURN_LIGHT`, from the upper left): the face is shaded by how the
   turn changes its surface normals (those of the depth bump) towards the light, so the lit side
   of the face and its brightness follow yaw, pitch and roll.  A frontal pose (yaw = pitch = roll
   = 0) renders the same pixels with and without the cues; the landmarks, the face warp and
   every factor's meaning are the same either way.

The voice (:func:`synthesize_audio`) is additive source–filter synthesis: harmonics of a
glottal f0 weighted by three formant resonances; F1 follows the mouth opening, F2 width and
rounding, and the loudness envelope is proportional to the opening.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from ..audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from ..face.align import TEMPLATE_68

CANONICAL = 256.0

# The synthetic face is laid out on the official 68-point template (docs/design.md §7.1).
TEMPLATE68 = TEMPLATE_68

FACE_CENTER = np.array([127.5, 140.0])  # pose pivot (canonical)
EYE_LINE = 112.0
BUMP_DEPTH, BUMP_SX, BUMP_SY = 55.0, 55.0, 70.0  # depth field z(c) for yaw/pitch

# Turn cues (render_frames(turn_cues=True)): depths of the layers behind the pivot (canonical px;
# the face's depth is the bump, 55 at its centre, ~25 at the jaw line), and the frame-fixed light.
EAR_DEPTH = -25.0
HAIR_DEPTH = -30.0
NECK_DEPTH = 0.0  # on the turning axis: the neck stays while the chin turns over it
TURN_LIGHT = np.array([-0.40, -0.65, 0.65]) / np.linalg.norm([-0.40, -0.65, 0.65])  # x right, y down, z: camera
TURN_LIGHT_GAIN = 1.5  # face brightness × (1 + gain·(n_turned·L − n_frontal·L))

JAW = list(range(0, 17))
BROW_L, BROW_R = list(range(17, 22)), list(range(22, 27))
NOSE_BRIDGE, NOSE_BASE = list(range(27, 31)), list(range(31, 36))
EYE_L, EYE_R = list(range(36, 42)), list(range(42, 48))
OUTER_LIP, INNER_LIP = list(range(48, 60)), list(range(60, 68))


# --------------------------------------------------------------------------- identity


SKIN_TONES = np.array([(0.98, 0.86, 0.76), (0.93, 0.74, 0.60), (0.80, 0.58, 0.43), (0.60, 0.41, 0.28),
                       (0.40, 0.27, 0.18)])
HAIR_COLORS = np.array([(0.08, 0.07, 0.07), (0.24, 0.15, 0.09), (0.45, 0.30, 0.17), (0.86, 0.73, 0.46),
                        (0.62, 0.26, 0.11), (0.66, 0.66, 0.68)])
HAIR_STYLES = ("short", "long", "fringe", "bald")


@dataclass
class Identity:
    """Appearance and voice of one synthetic speaker (all clip-constant)."""

    face_w: float = 1.0       # jaw width scale about the centre
    face_h: float = 1.0       # vertical scale below the eye line
    eye_gap: float = 0.0      # extra half-spacing of the eyes (canonical px)
    eye_size: float = 1.0
    nose_len: float = 0.0     # nose base shift (canonical px)
    mouth_w: float = 1.0
    lip_thick: float = 1.0
    brow_thick: float = 2.5
    skin: tuple = (0.93, 0.74, 0.60)
    hair: tuple = (0.24, 0.15, 0.09)
    hair_style: str = "short"
    hairline: float = 0.0     # hairline shift (canonical px, + = lower)
    hair_tilt: float = 0.0    # fringe slope
    iris: tuple = (0.30, 0.20, 0.12)
    lips: tuple = (0.75, 0.38, 0.36)
    shirt: tuple = (0.2, 0.3, 0.6)
    bg_top: tuple = (0.7, 0.75, 0.8)
    bg_bottom: tuple = (0.4, 0.45, 0.5)
    f0: float = 140.0         # voice pitch (Hz)
    tract: float = 1.0        # formant scale (vocal-tract length)

    def vector(self) -> np.ndarray:
        """All numeric parameters as one float vector (for probes); style as an index."""
        out = []
        for key, value in asdict(self).items():
            if key == "hair_style":
                out.append(float(HAIR_STYLES.index(value)))
            elif isinstance(value, tuple):
                out.extend(float(v) for v in value)
            else:
                out.append(float(value))
        return np.asarray(out, dtype=np.float32)


def _palette(rng: np.random.Generator, colors: np.ndarray) -> tuple:
    u = rng.uniform(0, len(colors) - 1)
    i = min(int(u), len(colors) - 2)
    c = colors[i] + (u - i) * (colors[i + 1] - colors[i])
    return tuple(float(v) for v in np.clip(c + rng.normal(0, 0.02, 3), 0, 1))


def _hsv(rng, s_range, v_range) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*s_range), rng.uniform(*v_range)))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity: face shape, skin, hair, eyes, background, voice."""
    skin = _palette(rng, SKIN_TONES)
    lips = tuple(float(v) for v in np.clip(np.array(skin) * np.array([0.95, 0.62, 0.62]) + [0.05, 0, 0], 0, 1))
    bg = _hsv(rng, (0.1, 0.5), (0.45, 0.95))
    return Identity(
        face_w=float(rng.uniform(0.88, 1.10)), face_h=float(rng.uniform(0.92, 1.08)),
        eye_gap=float(rng.uniform(-5, 5)), eye_size=float(rng.uniform(0.85, 1.2)),
        nose_len=float(rng.uniform(-5, 5)), mouth_w=float(rng.uniform(0.85, 1.15)),
        lip_thick=float(rng.uniform(0.7, 1.35)), brow_thick=float(rng.uniform(1.8, 3.6)),
        skin=skin, hair=_palette(rng, HAIR_COLORS), hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hairline=float(rng.uniform(-8, 10)), hair_tilt=float(rng.uniform(-0.25, 0.25)),
        iris=tuple(float(v) for v in _hsv(rng, (0.3, 0.8), (0.2, 0.6))), lips=lips,
        shirt=tuple(float(v) for v in _hsv(rng, (0.3, 0.9), (0.2, 0.8))),
        bg_top=tuple(float(v) for v in bg), bg_bottom=tuple(float(v) for v in np.clip(bg * rng.uniform(0.5, 0.9), 0, 1)),
        f0=float(rng.uniform(95, 230)), tract=float(rng.uniform(0.9, 1.15)),
    )


def identity_landmarks(ident: Identity) -> np.ndarray:
    """The identity's neutral canonical landmarks [68,2]."""
    p = TEMPLATE68.copy()
    cx = FACE_CENTER[0]
    p[JAW, 0] = cx + (p[JAW, 0] - cx) * ident.face_w
    below = p[:, 1] > EYE_LINE
    p[below, 1] = EYE_LINE + (p[below, 1] - EYE_LINE) * ident.face_h
    for eye, brow, sign in ((EYE_L, BROW_L, -1.0), (EYE_R, BROW_R, 1.0)):
        c = p[eye].mean(0)
        p[eye] = c + (p[eye] - c) * ident.eye_size
        p[eye, 0] += sign * ident.eye_gap
        p[brow, 0] += sign * 0.8 * ident.eye_gap
    p[NOSE_BASE, 1] += ident.nose_len
    p[30, 1] += 0.7 * ident.nose_len
    mouth = OUTER_LIP + INNER_LIP
    cm = p[INNER_LIP].mean(0)
    p[mouth, 0] = cm[0] + (p[mouth, 0] - cm[0]) * ident.mouth_w
    p[OUTER_LIP, 1] = cm[1] + (p[OUTER_LIP, 1] - cm[1]) * ident.lip_thick
    return p


# --------------------------------------------------------------------------- deformation

# Jaw drop profile for points 4..12 (chin follows the lower lip).
_JAW_DROP = np.array([0.1, 0.3, 0.55, 0.8, 1.0, 0.8, 0.55, 0.3, 0.1])
_LOWER_OUTER = [55, 56, 57, 58, 59]
_UPPER_OUTER = [49, 50, 51, 52, 53]
_LOWER_INNER = [65, 66, 67]
_UPPER_INNER = [61, 62, 63]
_CORNERS = [48, 54, 60, 64]


def deform_landmarks(base: np.ndarray, mouth: np.ndarray, expression: np.ndarray, blink: np.ndarray) -> np.ndarray:
    """Canonical landmarks [T,68,2] from neutral `base` [68,2] and per-frame factors.

    mouth [T,3] = open ∈[0,1], width ∈[-1,1], round ∈[0,1];
    expression [T,6] = brow_raise ∈[-1,1], brow_furrow ∈[0,1], eyelid ∈[-1,1], cheek ∈[0,1],
    corner_curve ∈[-1,1], corner_asym ∈[0,1]; blink [T] ∈[0,1] (1 = closed).
    """
    T = mouth.shape[0]
    p = np.repeat(base[None].astype(np.float64), T, axis=0)
    o, w, r = (mouth[:, i:i + 1] for i in range(3))
    b_raise, b_furrow, lid, cheek, curve, asym = (expression[:, i:i + 1] for i in range(6))
    blink = blink.reshape(T, 1)

    # mouth: width/rounding scale x about the mouth centre, opening drops the lower lip and jaw
    cm = base[INNER_LIP].mean(0)
    mouth_idx = OUTER_LIP + INNER_LIP
    sx = 1.0 + 0.18 * w - 0.30 * r
    p[:, mouth_idx, 0] = cm[0] + (p[:, mouth_idx, 0] - cm[0]) * sx
    drop = 26.0 * o
    p[:, _LOWER_OUTER + _LOWER_INNER, 1] += drop
    p[:, _CORNERS, 1] += 0.45 * drop
    p[:, _UPPER_OUTER + _UPPER_INNER, 1] -= 0.12 * drop
    pucker = 3.0 * r * (o + 0.2)
    p[:, _UPPER_INNER, 1] -= pucker
    p[:, _LOWER_INNER, 1] += pucker
    p[:, [50, 51, 52], 1] -= 2.5 * r
    p[:, [56, 57, 58], 1] += 2.5 * r
    p[:, 4:13, 1] += drop * _JAW_DROP[None, :]

    # expression
    p[:, BROW_L + BROW_R, 1] -= 9.0 * b_raise
    p[:, [20, 21], 0] += 4.0 * b_furrow
    p[:, [22, 23], 0] -= 4.0 * b_furrow
    p[:, [20, 21, 22, 23], 1] += 6.0 * b_furrow
    p[:, [19, 24], 1] += 3.0 * b_furrow
    p[:, [48, 60], 0] -= 2.0 * curve
    p[:, [54, 64], 0] += 2.0 * curve
    p[:, _CORNERS, 1] -= 7.0 * curve + 2.0 * cheek
    p[:, [54, 64], 1] -= 7.0 * asym
    p[:, [31, 35], 1] -= 1.5 * cheek
    openness = np.clip((1.0 + 0.45 * lid) * (1.0 - blink), 0.0, None)
    for eye in (EYE_L, EYE_R):
        yc = 0.5 * (p[:, eye[0], 1] + p[:, eye[3], 1])[:, None]
        p[:, eye, 1] = yc + (p[:, eye, 1] - yc) * openness
        p[:, eye[1:3], 1] -= 1.0 * b_raise * (1.0 - blink)
        p[:, eye[4:6], 1] -= 2.0 * cheek * (1.0 - blink)
        # lower lid never crosses the upper lid
        p[:, eye[4:6], 1] = np.maximum(p[:, eye[4:6], 1], p[:, eye[1:3][::-1], 1])
    return p


# --------------------------------------------------------------------------- pose warp


def _bump(cx, cy, lib):
    return BUMP_DEPTH * lib.exp(-0.5 * ((cx / BUMP_SX) ** 2 + (cy / BUMP_SY) ** 2))


def pose_forward(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Canonical points [T,K,2] → frame points in the 256 frame, pose [T,6]."""
    yaw, pitch, roll, tx, ty, scale = (pose[:, i:i + 1] for i in range(6))
    cx = points[..., 0] - FACE_CENTER[0]
    cy = points[..., 1] - FACE_CENTER[1]
    z = _bump(cx, cy, np)
    ux = (cx + np.sin(yaw) * z) * np.cos(yaw)
    uy = (cy + np.sin(pitch) * z) * np.cos(pitch)
    c, s = np.cos(roll), np.sin(roll)
    qx = scale * (c * ux - s * uy) + FACE_CENTER[0] + tx * CANONICAL
    qy = scale * (s * ux + c * uy) + FACE_CENTER[1] + ty * CANONICAL
    return np.stack([qx, qy], -1)


def _unwarp(qx: torch.Tensor, qy: torch.Tensor, pose: np.ndarray):
    """Frame coords → (ux, uy, sin yaw, sin pitch): the pose map undone up to the depth shift."""
    pz = torch.from_numpy(pose.astype(np.float32))[:, :, None, None]
    yaw, pitch, roll, tx, ty, scale = pz.unbind(1)
    dx = qx - FACE_CENTER[0] - tx * CANONICAL
    dy = qy - FACE_CENTER[1] - ty * CANONICAL
    c, s = torch.cos(roll), torch.sin(roll)
    ux = (c * dx + s * dy) / (scale * torch.cos(yaw))
    uy = (-s * dx + c * dy) / (scale * torch.cos(pitch))
    return ux, uy, torch.sin(yaw), torch.sin(pitch)


def pose_inverse(qx: torch.Tensor, qy: torch.Tensor, pose: np.ndarray, iters: int = 6):
    """Frame coords (256 frame, broadcastable to [T,H,W]) → canonical coords, pose [T,6]."""
    ux, uy, ay, ap = _unwarp(qx, qy, pose)
    cx, cy = ux, uy
    for _ in range(iters):
        z = _bump(cx, cy, torch)
        cx, cy = ux - ay * z, uy - ap * z
    return cx + FACE_CENTER[0], cy + FACE_CENTER[1]


def layer_forward(points: np.ndarray, pose: np.ndarray, depth: float) -> np.ndarray:
    """:func:`pose_forward` for a flat layer at constant `depth` instead of the face's bump (the
    turn cues' ears and back hair; a negative depth lies behind the pivot and moves against the face)."""
    yaw, pitch, roll, tx, ty, scale = (pose[:, i:i + 1] for i in range(6))
    ux = (points[..., 0] - FACE_CENTER[0] + np.sin(yaw) * depth) * np.cos(yaw)
    uy = (points[..., 1] - FACE_CENTER[1] + np.sin(pitch) * depth) * np.cos(pitch)
    c, s = np.cos(roll), np.sin(roll)
    qx = scale * (c * ux - s * uy) + FACE_CENTER[0] + tx * CANONICAL
    qy = scale * (s * ux + c * uy) + FACE_CENTER[1] + ty * CANONICAL
    return np.stack([qx, qy], -1)


def layer_inverse(qx: torch.Tensor, qy: torch.Tensor, pose: np.ndarray, depth: float):
    """Frame coords → canonical coords of a flat layer at constant `depth` (exact inverse of
    :func:`layer_forward`; at yaw = pitch = 0 the same as :func:`pose_inverse`)."""
    ux, uy, ay, ap = _unwarp(qx, qy, pose)
    return ux - ay * depth + FACE_CENTER[0], uy - ap * depth + FACE_CENTER[1]


def turn_light(px: torch.Tensor, py: torch.Tensor, pose: np.ndarray) -> torch.Tensor:
    """Brightness factor [T,H,W] of the face under the turn cues' frame-fixed light.

    The bump's surface normal at canonical (px, py) is turned by yaw (about the vertical axis,
    the front towards +x), pitch (about the horizontal axis, the front towards +y) and roll; the
    factor is 1 + TURN_LIGHT_GAIN·(n_turned·L − n_frontal·L), exactly 1 for a frontal pose."""
    pz = torch.from_numpy(pose.astype(np.float32))[:, :, None, None]
    yaw, pitch, roll = pz[:, 0], pz[:, 1], pz[:, 2]
    cx, cy = px - FACE_CENTER[0], py - FACE_CENTER[1]
    z = _bump(cx, cy, torch)
    nx, ny = z * cx / BUMP_SX ** 2, z * cy / BUMP_SY ** 2  # −∂z/∂x, −∂z/∂y
    nz = torch.ones_like(nx)
    norm = torch.sqrt(nx * nx + ny * ny + 1.0)
    nx, ny, nz = nx / norm, ny / norm, nz / norm
    L = [float(v) for v in TURN_LIGHT]
    frontal = L[0] * nx + L[1] * ny + L[2] * nz
    c, s = torch.cos(yaw), torch.sin(yaw)
    nx, nz = c * nx + s * nz, c * nz - s * nx
    c, s = torch.cos(pitch), torch.sin(pitch)
    ny, nz = c * ny + s * nz, c * nz - s * ny
    c, s = torch.cos(roll), torch.sin(roll)
    nx, ny = c * nx - s * ny, s * nx + c * ny
    turned = L[0] * nx + L[1] * ny + L[2] * nz
    return (1.0 + TURN_LIGHT_GAIN * (turned - frontal)).clamp(0.5, 1.5)


# --------------------------------------------------------------------------- SDF primitives


def _subdivide_closed(v: np.ndarray, times: int = 1) -> np.ndarray:
    """Catmull-Rom midpoint subdivision of closed polygons [T,M,2] → [T,2M,2]."""
    for _ in range(times):
        p0, p1, p2, p3 = np.roll(v, 1, 1), v, np.roll(v, -1, 1), np.roll(v, -2, 1)
        mid = (-p0 + 9 * p1 + 9 * p2 - p3) / 16.0
        out = np.empty((v.shape[0], 2 * v.shape[1], 2), v.dtype)
        out[:, 0::2], out[:, 1::2] = v, mid
        v = out
    return v


def _subdivide_open(v: np.ndarray) -> np.ndarray:
    p1, p2 = v[:, :-1], v[:, 1:]
    p0 = np.concatenate([v[:, :1], v[:, :-2]], 1)
    p3 = np.concatenate([v[:, 2:], v[:, -1:]], 1)
    mid = (-p0 + 9 * p1 + 9 * p2 - p3) / 16.0
    out = np.empty((v.shape[0], 2 * v.shape[1] - 1, 2), v.dtype)
    out[:, 0::2], out[:, 1::2] = v, mid
    return out


def _poly_sdf(px, py, verts: np.ndarray):
    """Signed distance to closed polygons (negative inside); px,py [T,h,w], verts [T,M,2]."""
    vt = torch.from_numpy(verts.astype(np.float32))[:, :, :, None, None]
    vx, vy = vt[:, :, 0], vt[:, :, 1]
    ex_all, ey_all = torch.roll(vx, 1, 1) - vx, torch.roll(vy, 1, 1) - vy
    inv_all = 1.0 / (ex_all * ex_all + ey_all * ey_all + 1e-9)
    d2 = torch.full(px.shape, float("inf"))
    inside = torch.zeros(px.shape, dtype=torch.bool)
    for i in range(verts.shape[1]):
        ex, ey, inv = ex_all[:, i], ey_all[:, i], inv_all[:, i]
        wx, wy = px - vx[:, i], py - vy[:, i]
        h = (wx * ex).addcmul_(wy, ey).mul_(inv).clamp_(0, 1)
        dx = torch.addcmul(wx, h, ex, value=-1.0)
        dy = torch.addcmul(wy, h, ey, value=-1.0)
        torch.minimum(d2, dx.mul_(dx).addcmul_(dy, dy), out=d2)
        c1 = py >= vy[:, i]
        c2 = py < vy[:, i - 1]
        c3 = (ex * wy) > (ey * wx)
        inside ^= (c1 == c2) & (c2 == c3)
    d = d2.sqrt_()
    return torch.where(inside, -d, d)


def _polyline_dist(px, py, verts: np.ndarray):
    vt = torch.from_numpy(verts.astype(np.float32))[:, :, :, None, None]
    vx, vy = vt[:, :, 0], vt[:, :, 1]
    d2 = torch.full(px.shape, float("inf"))
    for i in range(verts.shape[1] - 1):
        ex, ey = vx[:, i + 1] - vx[:, i], vy[:, i + 1] - vy[:, i]
        inv = 1.0 / (ex * ex + ey * ey + 1e-9)
        wx, wy = px - vx[:, i], py - vy[:, i]
        h = (wx * ex).addcmul_(wy, ey).mul_(inv).clamp_(0, 1)
        dx = torch.addcmul(wx, h, ex, value=-1.0)
        dy = torch.addcmul(wy, h, ey, value=-1.0)
        torch.minimum(d2, dx.mul_(dx).addcmul_(dy, dy), out=d2)
    return d2.sqrt_()


def _ellipse_sdf(px, py, cx, cy, rx, ry):
    """First-order signed distance to an axis-aligned ellipse; centres/radii broadcastable."""
    dx, dy = px - cx, py - cy
    f = (dx / rx) ** 2 + (dy / ry) ** 2 - 1.0
    g = 2.0 * torch.sqrt((dx / rx ** 2) ** 2 + (dy / ry ** 2) ** 2) + 1e-6
    return f / g


def _cov(sdf, pix):
    """Anti-aliased coverage of {sdf < 0} with a one-pixel ramp (pix: canonical units per pixel)."""
    return (0.5 - sdf / pix).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- rasteriser


class _Canvas:
    def __init__(self, img, px, py, pix, pose, size):
        self.img, self.px, self.py, self.pix, self.pose, self.size = img, px, py, pix, pose, size

    def roi(self, canon_pts: np.ndarray, margin_canon: float, depth: Optional[float] = None):
        """Output-pixel window (y0,y1,x0,x1) covering canonical points [T,K,2] (+margin); `depth`:
        of a flat layer at that depth (:func:`layer_forward`) instead of the face."""
        q = pose_forward(canon_pts, self.pose) if depth is None else layer_forward(canon_pts, self.pose, depth)
        q = q * (self.size / CANONICAL)
        m = margin_canon * (self.size / CANONICAL) * float(np.max(self.pose[:, 5])) + 2.0
        x0 = int(np.floor(q[..., 0].min() - m)); x1 = int(np.ceil(q[..., 0].max() + m)) + 1
        y0 = int(np.floor(q[..., 1].min() - m)); y1 = int(np.ceil(q[..., 1].max() + m)) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return y0, y1, x0, x1

    def coords(self, win):
        if win is None:
            return self.px, self.py
        y0, y1, x0, x1 = win
        return self.px[:, y0:y1, x0:x1], self.py[:, y0:y1, x0:x1]

    def paint(self, win, alpha, color):
        """img ← img + α·(color − img) inside the window; color [3] or [...,3]."""
        if win is None:
            view = self.img
        else:
            y0, y1, x0, x1 = win
            view = self.img[:, y0:y1, x0:x1]
        col = color if torch.is_tensor(color) else torch.tensor(color, dtype=torch.float32)
        view += alpha[..., None] * (col - view)


def render_frames(ident: Identity, mouth: np.ndarray, pose: np.ndarray, expression: np.ndarray,
                  blink: np.ndarray, size: int = 64, chunk: int | None = None, turn_cues: bool = False):
    """Render frames uint8 [T,S,S,3] and landmarks float32 [T,68,2] (pixel coordinates).

    Landmark pixel convention: pixel centres at integers, (0,0) the top-left pixel's centre.
    `turn_cues`: ears and back hair behind the pivot and a frame-fixed light on the face, so a
    yaw/pitch turn reads as one (see the module doc; the landmarks are the same either way).
    """
    T = mouth.shape[0]
    base = identity_landmarks(ident)
    canon = deform_landmarks(base, mouth, expression, blink)
    lm256 = pose_forward(canon, pose)
    landmarks = ((lm256 + 0.5) * (size / CANONICAL) - 0.5).astype(np.float32)
    frames = np.empty((T, size, size, 3), np.uint8)
    chunk = chunk or max(1, (1 << 17) // (size * size))  # ~128k pixels per pass: stays in cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is fastest; callers overlap I/O instead
    try:
        for s in range(0, T, chunk):
            sl = slice(s, min(T, s + chunk))
            frames[sl] = _render_chunk(ident, base, canon[sl], pose[sl], mouth[sl], expression[sl], size,
                                       bool(turn_cues))
    finally:
        torch.set_num_threads(threads)
    return frames, landmarks


def _render_chunk(ident, base, canon, pose, mouth, expression, size, turn_cues=False):
    T = canon.shape[0]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (CANONICAL / size) - 0.5
    qy, qx = grid[:, None].expand(size, size), grid[None, :].expand(size, size)
    px, py = pose_inverse(qx[None], qy[None], pose)
    pix = torch.from_numpy((CANONICAL / size) / pose[:, 5].astype(np.float32))[:, None, None]

    # background (frame space, static): vertical gradient + soft light spot
    top, bottom = torch.tensor(ident.bg_top), torch.tensor(ident.bg_bottom)
    v = (qy / CANONICAL)[..., None]
    bg = top + v * (bottom - top)
    spot = torch.exp(-(((qx - 60) / 90) ** 2 + ((qy - 50) / 90) ** 2))[..., None]
    bg = bg + 0.12 * spot * (1 - bg)
    img = bg[None].repeat(T, 1, 1, 1).contiguous()
    cv = _Canvas(img, px, py, pix, pose, size)
    skin = np.array(ident.skin, np.float32)
    hair = np.array(ident.hair, np.float32)
    cx = FACE_CENTER[0]
    half_w = 0.5 * (base[16, 0] - base[0, 0])
    top_y = base[0, 1] - 95.0 * ident.face_h + ident.hairline * 0.3

    # torso and neck
    cv.paint(None, _cov(_ellipse_sdf(px, py, cx, 330.0, 125.0, 85.0), pix), ident.shirt)
    chin_y = torch.from_numpy(canon[:, 8, 1].astype(np.float32))[:, None, None]
    nx, ny = layer_inverse(qx[None], qy[None], pose, NECK_DEPTH) if turn_cues else (px, py)  # cues: turning axis
    neck = _ellipse_sdf(nx, ny, cx, chin_y + 20.0, 0.42 * half_w, 55.0)
    cv.paint(None, _cov(neck, pix), skin * 0.82)

    # face outline: jaw + forehead arc
    ang = np.linspace(0.0, np.pi, 9)[1:-1]
    yc = 0.5 * (base[0, 1] + base[16, 1])
    arc = np.stack([cx + half_w * np.cos(ang), yc - (yc - top_y) * np.sin(ang)], -1)
    outline = _subdivide_closed(np.concatenate([canon[:, JAW], np.repeat(arc[None], T, 0)], 1), 1)

    # turn cues: the side of the head, the face's outline one pixel smaller on the ears' layer;
    # the face hides it completely at a frontal pose, a turn shows it (with the ear) on one side
    ear_x, ear_y = layer_inverse(qx[None], qy[None], pose, EAR_DEPTH) if turn_cues else (px, py)
    win = cv.roi(outline, 4.0, depth=EAR_DEPTH) if turn_cues else None
    if win is not None:
        y0, y1, x0, x1 = win
        side = _poly_sdf(ear_x[:, y0:y1, x0:x1], ear_y[:, y0:y1, x0:x1], outline)
        cv.paint(win, _cov(side + pix, pix), skin * 0.94)

    # hair behind the head (turn cues: a layer behind the pivot, it moves against the face)
    hx, hy = layer_inverse(qx[None], qy[None], pose, HAIR_DEPTH) if turn_cues else (px, py)
    if ident.hair_style == "long":
        cv.paint(None, _cov(_ellipse_sdf(hx, hy, cx, 150.0, half_w * 1.22, 118.0), pix), hair)
    elif ident.hair_style in ("short", "fringe"):
        cv.paint(None, _cov(_ellipse_sdf(hx, hy, cx, top_y + 78.0, half_w * 1.10, 86.0), pix), hair)

    # ears (turn cues: behind the pivot, so a turn hides one behind the cheek and shows the other)
    for ex in (base[0, 0] - 3.0, base[16, 0] + 3.0):
        cv.paint(None, _cov(_ellipse_sdf(ear_x, ear_y, ex, 128.0, 9.0, 17.0), pix), skin * 0.88)

    # face
    face_sdf = _poly_sdf(px, py, outline)
    face_cov = _cov(face_sdf, pix)
    rr = ((px - cx) / (half_w * 1.05)) ** 2 + ((py - 140.0) / 110.0) ** 2
    shade = (1.0 - 0.22 * rr.clamp(0, 1.5))[..., None] * torch.from_numpy(skin)
    cv.paint(None, face_cov, shade)

    # cheeks (blush rises and strengthens with the cheek factor)
    ck = expression[:, 3].astype(np.float32)
    for a, b in ((2, 31), (14, 35)):
        c = 0.5 * (canon[:, a] + canon[:, b])
        ccx = torch.from_numpy(c[:, 0].astype(np.float32))[:, None, None]
        ccy = torch.from_numpy((c[:, 1] - 6.0 * ck).astype(np.float32))[:, None, None]
        win = cv.roi(c[:, None], 30.0)
        wx, wy = cv.coords(win)
        g = torch.exp(-((wx - ccx) ** 2 + (wy - ccy) ** 2) / (2 * 11.0 ** 2))
        amt = torch.from_numpy((0.10 + 0.35 * ck).astype(np.float32))[:, None, None]
        cv.paint(win, g * amt, np.clip(skin * np.array([1.0, 0.7, 0.7]) + [0.08, 0, 0], 0, 1).astype(np.float32))

    # fringe / hairline over the forehead
    if ident.hair_style != "bald":
        line_y = top_y + (32.0 if ident.hair_style == "fringe" else 20.0) + ident.hairline
        hl = line_y + ident.hair_tilt * (px - cx) + 3.0 * torch.sin(px / 9.0)
        fr = torch.minimum(face_cov, (0.5 + (hl - py) / pix).clamp(0, 1))
        cv.paint(None, fr, hair)

    # brows
    brow_col = np.clip(hair * 0.8, 0, 1).astype(np.float32)
    for idx in (BROW_L, BROW_R):
        pts = _subdivide_open(canon[:, idx])
        win = cv.roi(pts, ident.brow_thick + 2)
        wx, wy = cv.coords(win)
        cv.paint(win, _cov(_polyline_dist(wx, wy, pts) - ident.brow_thick, cv.pix), brow_col)

    # eyes: sclera, iris, pupil, lid outline
    for idx in (EYE_L, EYE_R):
        pts = _subdivide_closed(canon[:, idx], 1)
        win = cv.roi(pts, 4.0)
        wx, wy = cv.coords(win)
        sd = _poly_sdf(wx, wy, pts)
        sclera = _cov(sd, cv.pix)
        cv.paint(win, sclera, (0.95, 0.95, 0.93))
        center = base[idx].mean(0)
        ecx = torch.from_numpy(canon[:, idx, 0].mean(1).astype(np.float32))[:, None, None]
        r_iris = 0.19 * (base[idx[3], 0] - base[idx[0], 0])
        ecy = float(center[1])
        iris = _cov(_ellipse_sdf(wx, wy, ecx, ecy, r_iris, r_iris), cv.pix)
        cv.paint(win, torch.minimum(iris, sclera), ident.iris)
        pupil = _cov(_ellipse_sdf(wx, wy, ecx, ecy, 0.45 * r_iris, 0.45 * r_iris), cv.pix)
        cv.paint(win, torch.minimum(pupil, sclera), (0.04, 0.04, 0.05))
        cv.paint(win, _cov(sd.abs() - 0.9, cv.pix), (0.12, 0.09, 0.08))

    # nose: bridge shading and nostril line
    nb = _subdivide_open(canon[:, NOSE_BRIDGE])
    win = cv.roi(nb, 5.0)
    wx, wy = cv.coords(win)
    cv.paint(win, 0.25 * _cov(_polyline_dist(wx, wy, nb) - 1.6, cv.pix), skin * 0.7)
    nl = _subdivide_open(canon[:, NOSE_BASE])
    win = cv.roi(nl, 5.0)
    wx, wy = cv.coords(win)
    cv.paint(win, 0.8 * _cov(_polyline_dist(wx, wy, nl) - 1.4, cv.pix), skin * 0.55)

    # mouth: lips, inner mouth, upper teeth
    outer = _subdivide_closed(canon[:, OUTER_LIP], 1)
    win = cv.roi(outer, 4.0)
    wx, wy = cv.coords(win)
    cv.paint(win, _cov(_poly_sdf(wx, wy, outer), cv.pix), ident.lips)
    inner = _subdivide_closed(canon[:, INNER_LIP], 1)
    inner_cov = _cov(_poly_sdf(wx, wy, inner), cv.pix)
    cv.paint(win, inner_cov, (0.25, 0.06, 0.07))
    teeth_y = torch.from_numpy((canon[:, _UPPER_INNER, 1].mean(1) + 5.0).astype(np.float32))[:, None, None]
    teeth = torch.minimum(inner_cov, (0.5 + (teeth_y - wy) / cv.pix).clamp(0, 1))
    cv.paint(win, teeth, (0.93, 0.92, 0.86))
    if turn_cues:  # the frame-fixed light on everything drawn on the face (the sclera: a known white)
        lit = 1.0 + (turn_light(px, py, pose) - 1.0) * face_cov
        cv.img.mul_(lit[..., None])
    return (cv.img.clamp_(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


# --------------------------------------------------------------------------- voice


# Emotional prosody at full intensity (level 3; lower levels scale each deviation from neutral):
# f0 scale, intonation depth scale, spectral tilt (+ brighter / pressed, − darker), vibrato depth
# (fraction of f0 at 6.5 Hz) and breath-noise scale.  Loosely after the acoustic correlates of
# emotional speech (raised, wider pitch for happiness and surprise; low, flat and breathy for
# sadness; tremor for fear; bright, pressed voice for anger).
VOICE_EMOTIONS = {
    #             f0    inton  tilt   vibrato breath
    "neutral":   (1.00, 1.0,   0.00,  0.00,   1.0),
    "happy":     (1.18, 1.8,   0.15,  0.00,   1.0),
    "surprised": (1.30, 2.2,   0.10,  0.00,   1.2),
    "angry":     (1.08, 1.3,   0.35,  0.00,   0.5),
    "fear":      (1.22, 0.8,   0.00,  0.04,   2.5),
    "sad":       (0.85, 0.4,  -0.25,  0.00,   2.0),
    "disgusted": (0.92, 0.7,  -0.10,  0.00,   1.5),
    "contempt":  (0.95, 0.6,   0.05,  0.00,   1.2),
}


def voice_prosody(emotion: Optional[str], intensity: float) -> tuple:
    """(f0 scale, intonation scale, tilt, vibrato, breath) for `emotion` at `intensity` in [0, 1]."""
    neutral = VOICE_EMOTIONS["neutral"]
    if emotion is None:
        return neutral
    if emotion not in VOICE_EMOTIONS:
        raise ValueError(f"no voice for emotion {emotion!r}")
    return tuple(n + intensity * (e - n) for n, e in zip(neutral, VOICE_EMOTIONS[emotion]))


def synthesize_audio(mouth: np.ndarray, ident: Identity, rng: np.random.Generator, emotion: Optional[str] = None,
                     intensity: float = 1.0) -> np.ndarray:
    """Voice for per-frame mouth [T,3]: float32 [T·640] at 16 kHz, frame exact.

    Loudness envelope ∝ opening (interpolated per sample between frame centres); harmonics of
    f0 (identity pitch with slow intonation) weighted by formants F1 = (280 + 620·open −
    80·round)·tract, F2 = (1250 + 650·width − 550·round)·tract, F3 = 2600·tract; normalised per
    sample so the spectrum shape never changes the loudness; plus breath noise and a silence floor.
    `emotion` (with `intensity`) colours the voice by :data:`VOICE_EMOTIONS`; None is the neutral
    voice, sample for sample (the random draws are the same either way).
    """
    f0_scale, inton, tilt, vibrato, breath = voice_prosody(emotion, intensity)
    T = mouth.shape[0]
    n = T * SAMPLES_PER_FRAME
    tf = (np.arange(n) + 0.5) / SAMPLES_PER_FRAME - 0.5
    idx = np.arange(T)
    o = np.interp(tf, idx, mouth[:, 0])
    w = np.interp(tf, idx, mouth[:, 1])
    r = np.interp(tf, idx, mouth[:, 2])
    t = np.arange(n) / SAMPLE_RATE
    base = ident.f0 * f0_scale
    f0 = base * (1.0 + inton * 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 2 * np.pi))
                 + inton * 0.03 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * t + rng.uniform(0, 2 * np.pi)))
    if vibrato:
        f0 = f0 * (1.0 + vibrato * np.sin(2 * np.pi * 6.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    formants = ((280.0 + 620.0 * o - 80.0 * r) * ident.tract, 90.0, 1.0), \
               ((1250.0 + 650.0 * w - 550.0 * r) * ident.tract, 120.0, 0.6), \
               (2600.0 * ident.tract, 170.0, 0.25)
    K = int(4000.0 // base)
    sig = np.zeros(n)
    norm = np.zeros(n)
    for k in range(1, K + 1):
        fk = k * f0
        g = sum(a / (1.0 + ((fk - F) / B) ** 2) for F, B, a in formants) * k ** (-0.6 + tilt)
        sig += g * np.sin(k * phase)
        norm += g * g
    env = np.clip(o, 0.0, 1.0)
    voice = sig / np.sqrt(norm + 1e-12) * np.sqrt(2.0) * 0.5 * env
    noise = rng.standard_normal(n) * (0.03 * breath * env + 0.002)
    return (voice + noise).astype(np.float32)
