"""Video face tube (docs/design.md §7.2, product variant): one fixed square box per video.

detect per frame (downscaled to ≤640) → track by IoU against each trajectory's initial box →
longest tube → union box → enlarge (r=0.1) → square, padded (not clamped) → crop every frame
and resize to `size`. One box row per frame (NaN where no face, then interpolated/held; bug 11),
the end frame included and the longest tube kept (bug 5). The box is kept for paste-back.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import FaceNotFoundError, InputError
from .align import _check_frames, _downscale, crop_video_to_template
from .geometry import CropParams
from .landmarks import Box, FaceLandmarker, get_landmarker

DETECT_MAX_SIDE = 640
IOU_THRESHOLD = 0.25
ENLARGE = 0.1

# [D] dlib's HOG boxes are tighter than S3FD's (they stop at the brows and above the chin). These
# approximate factors widen them about their centre towards an S3FD-like face box before the
# §7.2 enlargement, so the framing of dlib-made tubes is close to the official one.
BOX_SCALE = {"dlib": (1.15, 1.40)}


@dataclass
class TubeCrop(CropParams):
    """A §7.2 tube crop: the square `box` (x1, y1, x2, y2; x2−x1 = y2−y1, may exceed the frame)
    cut from every frame, the per-frame face track [T,4] and the tube's frame range."""

    box: Tuple[int, int, int, int] = (0, 0, 0, 0)
    track: Optional[np.ndarray] = field(default=None, repr=False)
    start: int = 0
    end: int = 0
    kind: str = "tube"


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes with +1-inclusive areas, as the official tracker."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(inter / (area_a + area_b - inter))


def detect_frames(frames: np.ndarray, landmarker: FaceLandmarker, detect_every: int = 1,
                  max_side: int = DETECT_MAX_SIDE, upsample: Optional[int] = 0) -> List[Optional[List[Box]]]:
    """Face boxes (frame coordinates) for frames 0, k, 2k, … and the last; None for skipped frames."""
    count = len(frames)
    step = max(1, int(detect_every))
    chosen = sorted(set(range(0, count, step)) | {count - 1})
    out: List[Optional[List[Box]]] = [None] * count
    kwargs = {"upsample": upsample} if (upsample is not None and landmarker.name == "dlib") else {}
    for i in chosen:
        small, back = _downscale(frames[i], max_side)
        boxes = landmarker.detect(small, **kwargs)
        out[i] = [(b[0] * back, b[1] * back, b[2] * back, b[3] * back, b[4]) for b in boxes]
    return out


@dataclass
class _Trajectory:
    initial: Tuple[float, float, float, float]
    rows: dict  # frame index → box (x1, y1, x2, y2, score)
    last: int

    @property
    def start(self) -> int:
        return min(self.rows)

    @property
    def end(self) -> int:
        return max(self.rows)


def track_faces(detections: Sequence[Optional[Sequence[Box]]], iou_threshold: float = IOU_THRESHOLD,
                max_gap: int = 12) -> List[_Trajectory]:
    """Group per-frame boxes into trajectories (docs/design.md §7.2 step 2).

    A detection joins the live trajectory whose *initial* box it overlaps most (IoU > threshold,
    at most one detection per trajectory and frame), else starts a new one. [D] A trajectory
    stays live across up to `max_gap` frames without a match (officially 0), so a few missed
    detections do not split a tube.
    """
    trajectories: List[_Trajectory] = []
    prev = None  # previous examined frame
    for i, boxes in enumerate(detections):
        if boxes is None:  # frame not examined (detect_every > 1)
            continue
        live = [t for t in trajectories if prev is not None and t.last >= prev - max_gap]
        prev = i
        used = set()
        for box in sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
            scored = [(box_iou(t.initial, box), n) for n, t in enumerate(live) if n not in used]
            scored = [s for s in scored if s[0] > iou_threshold]
            if scored:
                n = max(scored)[1]
                used.add(n)
                live[n].rows[i] = tuple(box)
                live[n].last = i
            else:
                trajectories.append(_Trajectory(tuple(box[:4]), {i: tuple(box)}, i))
    return trajectories


def fill_track(rows: np.ndarray) -> np.ndarray:
    """Fill NaN rows of a per-frame table [T,C]: linear inside, hold the nearest at the ends."""
    rows = np.array(rows, dtype=np.float64)
    valid = np.isfinite(rows).all(axis=1)
    if not valid.any():
        raise FaceNotFoundError("no face found in any video frame")
    t = np.arange(len(rows))
    for c in range(rows.shape[1]):
        rows[:, c] = np.interp(t, t[valid], rows[valid, c])
    return rows


def enlarge_box(box: Sequence[float], r: float = ENLARGE) -> Tuple[int, int, int, int]:
    """§7.2 step 3 without the clamp: grow each side by int(inc·size), inc ≥ r, making the box
    closer to square."""
    x1, y1, x2, y2 = box[:4]
    w, h = x2 - x1, y2 - y1
    w_inc = max(r, ((1 + 2 * r) * h - w) / (2 * w))
    h_inc = max(r, ((1 + 2 * r) * w - h) / (2 * h))
    dx, dy = int(w_inc * w), int(h_inc * h)
    return int(x1 - dx), int(y1 - dy), int(x2 + dx), int(y2 + dy)


def square_box(box: Sequence[float]) -> Tuple[int, int, int, int]:
    """Smallest square with the same centre that contains `box` (integer corners)."""
    x1, y1, x2, y2 = box[:4]
    side = int(np.ceil(max(x2 - x1, y2 - y1)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    nx, ny = int(np.floor(cx - side / 2.0 + 0.5)), int(np.floor(cy - side / 2.0 + 0.5))
    return nx, ny, nx + side, ny + side


def scale_box(box: Sequence[float], sx: float, sy: float) -> Tuple[float, float, float, float]:
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    hw, hh = (box[2] - box[0]) * sx / 2.0, (box[3] - box[1]) * sy / 2.0
    return cx - hw, cy - hh, cx + hw, cy + hh


def cut_box(frame: np.ndarray, box: Sequence[int], pad_mode: str = "constant") -> np.ndarray:
    """frame[y1:y2, x1:x2] where the box may leave the frame: the outside is zeros or edge pixels."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if ix1 >= ix2 or iy1 >= iy2:  # box entirely outside: nothing to copy
        return np.zeros((y2 - y1, x2 - x1, 3), dtype=frame.dtype)
    inner = frame[iy1:iy2, ix1:ix2]
    pads = ((iy1 - y1, y2 - iy2), (ix1 - x1, x2 - ix2), (0, 0))
    if not any(p for pair in pads for p in pair):
        return inner
    return np.pad(inner, pads, mode="edge" if pad_mode == "edge" else "constant")


def face_tube(frames: np.ndarray, landmarker: Union[str, FaceLandmarker, None] = None, size: int = 256,
              detect_every: int = 1, max_side: int = DETECT_MAX_SIDE, upsample: Optional[int] = None,
              enlarge: float = ENLARGE, pad_mode: str = "constant", max_gap: int = 12,
              box_scale: Optional[Tuple[float, float]] = None) -> Tuple[np.ndarray, TubeCrop]:
    """Crop a stable square face box from every frame of a clip (docs/design.md §7.2, product variant).

    Args:
        frames: RGB uint8 [T,H,W,3] (already at 25 fps: the crop keeps one output per frame).
        landmarker: backend name or instance (only its detector is used).
        size: output side; crops are PIL-bicubic resized from the box.
        detect_every: detect on every k-th frame (and the last); boxes are interpolated between.
        max_side: frames are downscaled to this max side for detection.
        upsample: dlib pyramid upsampling; None = 0, or 1 when probe frames show no face at 0.
        pad_mode: "constant" (zeros) or "edge" for box parts outside the frame.
        box_scale: (sx, sy) applied to raw detector boxes; default per backend (BOX_SCALE).

    Returns:
        (crops uint8 [T,size,size,3], TubeCrop).
    """
    frames = _check_frames(frames)
    _check_pad_mode(pad_mode)
    backend = get_landmarker(landmarker or "dlib")
    if upsample is None and backend.name == "dlib":
        upsample = _pick_upsample(frames, backend, max_side)
    detections = detect_frames(frames, backend, detect_every, max_side, upsample)
    params = tube_from_detections(detections, frames.shape[1:3], size, backend.name, enlarge, max_gap, box_scale)
    return crop_tube(frames, params, pad_mode), params


def _check_pad_mode(pad_mode: str) -> None:
    if pad_mode not in ("constant", "edge"):
        raise InputError(f"pad_mode must be 'constant' or 'edge', got {pad_mode!r}")


def tube_from_detections(detections: Sequence[Optional[Sequence[Box]]], frame_shape: Tuple[int, int],
                         size: int = 256, backend_name: str = "dlib", enlarge: float = ENLARGE,
                         max_gap: int = 12, box_scale: Optional[Tuple[float, float]] = None) -> TubeCrop:
    """Per-frame face boxes (frame coordinates) → the clip's square tube box (§7.2 steps 2–3)."""
    count = len(detections)
    tubes = track_faces(detections, max_gap=max_gap)
    if not tubes:
        raise FaceNotFoundError(f"no face found in any of the {count} video frames; "
                                "use a clip with a visible frontal face, or disable cropping")
    tube = max(tubes, key=lambda t: (t.end - t.start + 1, len(t.rows)))
    table = np.full((count, 5), np.nan)  # one row per frame (bug 11)
    for i, row in tube.rows.items():
        table[i] = row
    track = fill_track(table)[:, :4]
    if tube.end - tube.start + 1 < 0.5 * count:
        warnings.warn(f"face tracked in frames {tube.start}–{tube.end} only, of {count}; "
                      "the same box is used for the other frames", stacklevel=3)

    union = (track[:, 0].min(), track[:, 1].min(), track[:, 2].max(), track[:, 3].max())
    sx, sy = box_scale or BOX_SCALE.get(backend_name, (1.0, 1.0))
    box = square_box(enlarge_box(scale_box(union, sx, sy), enlarge))
    side = box[2] - box[0]
    k = side / float(size)
    matrix = np.array([[k, 0.0, box[0] + 0.5 * k - 0.5], [0.0, k, box[1] + 0.5 * k - 0.5], [0.0, 0.0, 1.0]])
    return TubeCrop(matrix=matrix, size=int(size), frame_shape=tuple(frame_shape), box=box,
                    track=track, start=tube.start, end=tube.end)


def crop_tube(frames: Sequence[np.ndarray], params: TubeCrop, pad_mode: str = "constant") -> np.ndarray:
    """Cut the tube box from each frame and resize to the tube's size: uint8 [n,size,size,3]."""
    return resize_crops([cut_box(f, params.box, pad_mode) for f in frames], params.size)


def stream_face_tube(batches: Iterable[np.ndarray], frame_shape: Tuple[int, int],
                     landmarker: Union[str, FaceLandmarker, None] = None, size: int = 256,
                     enlarge: float = ENLARGE, max_gap: int = 12,
                     box_scale: Optional[Tuple[float, float]] = None, upsample: int = 0) -> TubeCrop:
    """First pass of the two-pass tube: detect on streamed (downscaled) frame batches, keep only
    the boxes, and return the tube for frames of `frame_shape` (H, W) — the frames the second
    pass will crop. Memory stays one batch however long the clip is."""
    backend = get_landmarker(landmarker or "dlib")
    detections: List[Optional[List[Box]]] = []
    kwargs = {"upsample": upsample} if backend.name == "dlib" else {}
    for batch in batches:
        sy, sx = frame_shape[0] / batch.shape[1], frame_shape[1] / batch.shape[2]
        for frame in batch:
            small, back = _downscale(frame, DETECT_MAX_SIDE)
            detections.append([(b[0] * back * sx, b[1] * back * sy, b[2] * back * sx, b[3] * back * sy, b[4])
                               for b in backend.detect(small, **kwargs)])
    return tube_from_detections(detections, frame_shape, size, backend.name, enlarge, max_gap, box_scale)


def _pick_upsample(frames: np.ndarray, backend: FaceLandmarker, max_side: int, probes: int = 5) -> int:
    """dlib upsampling for a clip: 0 (fast, faces ≳80 px after downscaling) unless none of a few
    evenly spaced frames shows a face that way, then 1 (faces ≳40 px)."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(probes, len(frames))).round().astype(int))
    for i in idx:
        small, _ = _downscale(frames[i], max_side)
        if backend.detect(small, upsample=0):
            return 0
    return 1


def resize_crops(crops: Sequence[np.ndarray], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        out[i] = crop if crop.shape[0] == size else np.asarray(
            Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC))
    return out


def crop_video(frames: np.ndarray, landmarker: Union[str, FaceLandmarker, None] = None, size: int = 256,
               method: str = "tube", **options):
    """Crop the face of a clip: "tube" (§7.2, default; follows head motion within one fixed box)
    or "template" (§7.1 transform of the first frame applied to all). Returns (crops, params)."""
    if method == "tube":
        return face_tube(frames, landmarker=landmarker, size=size, **options)
    if method == "template":
        return crop_video_to_template(frames, size=size, landmarker=landmarker, **options)
    raise InputError(f"unknown video crop method {method!r}; use 'tube' or 'template'")
