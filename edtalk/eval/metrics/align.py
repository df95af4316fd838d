"""The reference suites' face crops, reproduced step by step (docs/evaluation.md lists the sources).

- :func:`eat_aligned_crop`: EAT's 128² crop for PSNR/SSIM/LMD/FID (``utils_crop.crop_and_align``):
  dlib 68 points on the frame, the open- or closed-eye template chosen by the eyelid gap, a
  similarity from template points 27–44 to the frame's, a 163² bilinear warp truncated to uint8,
  rows/columns 1–128 kept.
- :func:`pcavs_crops`: the PC-AVS crop EAT feeds to SyncNet (``scripts/align_68.py``): one
  similarity from the clip's mean eye/mouth points to a fixed 224² triangle, re-centred on the
  mouth every frame with a 0.2/0.8 running bias.
- :func:`syncnet_track_crops`: syncnet_python's face-track crop (``run_pipeline.crop_video``):
  box sizes and centres median-filtered over 13 frames, a 1.4-side square starting at the box top
  (pad value 110), resized to 224².
- :func:`arcface_crop`: insightface's ``norm_crop`` (112², the ArcFace 5-point template).
- :func:`emotion_face_chip`: Emotion-FAN's face chip (dlib 5 points, ``get_face_chip`` 224,
  padding 0.25) as EAT prepares Acc_emo.

dlib sees what the references gave it: EAT converts RGB frames with OpenCV's BGR→gray formula
(:func:`eat_gray`), Emotion-FAN passes RGB.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .registry import MetricUnavailable

EAT_WARP = 163  # EAT warps to 163² and keeps [1:129, 1:129]
EAT_CROP = 128
EAT_ALIGN_POINTS = slice(27, 45)  # nose 27–35 and eye points 36–44 of the template
PCAVS_TRIANGLE = np.array([[87.0, 59.0], [137.0, 59.0], [112.0, 120.0]])  # eyes, inner mouth in 224²
PCAVS_SIZE = 224
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])  # insightface, 112²
ARCFACE_SIZE = 112


# ----------------------------------------------------------------------------- geometry

def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3×3 least-squares similarity (Umeyama, scikit-image) mapping `src` points onto `dst`."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
        if not tform:
            raise ValueError("degenerate points: no similarity")
    else:  # scikit-image < 0.26
        tform = SimilarityTransform()
        if not tform.estimate(src, dst):
            raise ValueError("degenerate points: no similarity")
    return np.asarray(tform.params, np.float64)


def warp(image: np.ndarray, out_to_in: np.ndarray, size: int) -> np.ndarray:
    """float [size,size,C] in the image's own range: output pixel (x, y) samples the input at
    `out_to_in`·(x, y, 1), bilinear, zero outside (pixel centres at integers, like OpenCV)."""
    from skimage.transform import AffineTransform
    from skimage.transform import warp as sk_warp

    return sk_warp(image, AffineTransform(matrix=out_to_in), output_shape=(size, size), order=1, mode="constant",
                   cval=0.0, preserve_range=True)


def rounded_uint8(x: np.ndarray) -> np.ndarray:
    """OpenCV's saturate_cast: round half away from zero, clip to 0–255."""
    return np.clip(np.floor(np.asarray(x, np.float64) + 0.5), 0, 255).astype(np.uint8)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """float [size,size,C]: OpenCV INTER_LINEAR geometry (half-pixel centres, no antialiasing)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- dlib as the references call it

def eat_gray(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's COLOR_BGR2GRAY (14-bit fixed point) applied to RGB data, as EAT does with the RGB
    frames imageio gives it: red gets blue's weight and blue gets red's."""
    rgb = np.asarray(rgb, np.int64)
    return ((rgb[..., 0] * 1868 + rgb[..., 1] * 9617 + rgb[..., 2] * 4899 + 8192) >> 14).astype(np.uint8)


class DlibModels:
    """dlib's detectors and shape predictors from `face-recognition-models`, loaded once."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise MetricUnavailable("the reference crops need dlib: pip install dlib-bin") from None
        from ...errors import EDTalkError
        from ...face.landmarks import dlib_model_path

        try:
            self.predictor68 = dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))
            self.predictor5 = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
            self._cnn_path = dlib_model_path("mmod_human_face_detector.dat")
        except EDTalkError as exc:
            raise MetricUnavailable(str(exc)) from None
        self.dlib = dlib
        self.hog = dlib.get_frontal_face_detector()
        self._cnn = None

    @property
    def cnn(self):
        if self._cnn is None:
            self._cnn = self.dlib.cnn_face_detection_model_v1(self._cnn_path)
        return self._cnn

    def first_face68(self, gray: np.ndarray, upsample: int) -> Optional[np.ndarray]:
        """68 integer points [68,2] of dlib's first detection (its order), None without a face."""
        rects = self.hog(np.ascontiguousarray(gray), upsample)
        if len(rects) == 0:
            return None
        shape = self.predictor68(np.ascontiguousarray(gray), rects[0])
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def dlib_models() -> DlibModels:
    return DlibModels()


# ----------------------------------------------------------------------------- EAT's 128² crop

class EatTemplates:
    """EAT's two 68-point templates (open eyes: base_68.npy; closed: base_68_close.npy), in the
    163² warp frame; `source` says where they came from."""

    def __init__(self, open_eyes: np.ndarray, closed_eyes: np.ndarray, source: str, official: bool):
        self.open_eyes = _check_template(open_eyes, source)
        self.closed_eyes = _check_template(closed_eyes, source)
        self.source, self.official = source, official

    def for_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        """EAT's rule: the open-eye template when the upper lids (37, 38) sit more than 9 px in
        total above the lower lids (41, 40)."""
        gap = np.sum(landmarks[37:39, 1] - landmarks[40:42, 1])
        return self.open_eyes if gap < -9 else self.closed_eyes


def _check_template(points, source: str) -> np.ndarray:
    points = np.asarray(points, np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise MetricUnavailable(f"{source} is not a 68-point template (shape {points.shape})")
    return points


def load_eat_templates(path) -> EatTemplates:
    """base_68.npy (and base_68_close.npy beside it, else the same file for both) from EAT's code."""
    path = Path(path)
    closed = path.with_name("base_68_close.npy")

    def load(p: Path) -> np.ndarray:
        try:
            return np.load(p, allow_pickle=False)
        except Exception as exc:  # wrong file: one line
            raise MetricUnavailable(f"cannot read the EAT template {p}: {str(exc).splitlines()[0]}") from None

    open_eyes = load(path)
    return EatTemplates(open_eyes, load(closed) if closed.is_file() else open_eyes, str(path), official=True)


def stand_in_eat_templates() -> EatTemplates:
    """Without EAT's files: EDTalk's 256² template (docs/design.md §7.1) scaled so its mouth is 42 px wide
    (EAT's crop) and centred in the 128² window; one template for both eye states."""
    from ...face.align import TEMPLATE_68

    t = np.asarray(TEMPLATE_68, np.float64)
    scale = 42.0 / (t[54, 0] - t[48, 0])
    centred = (t - t.mean(axis=0)) * scale + (1 + EAT_CROP / 2)
    return EatTemplates(centred, centred, "EDTalk's template scaled to EAT's mouth width (not base_68.npy)",
                        official=False)


def eat_crop_matrix(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """3×3: 163² template frame → image pixels, from points 27–44."""
    src = np.asarray(template, np.float32)[EAT_ALIGN_POINTS]
    dst = np.asarray(landmarks, np.float32)[EAT_ALIGN_POINTS]
    return similarity(src, dst)


def to_crop_coordinates(points: np.ndarray, landmarks: np.ndarray, templates: EatTemplates) -> np.ndarray:
    """Frame points [K,2] → pixel coordinates of EAT's 128² crop of that frame (whose face has
    `landmarks`): the unit EAT's LMD is measured in."""
    matrix = np.linalg.inv(eat_crop_matrix(landmarks, templates.for_landmarks(landmarks)))
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:2, :2].T + matrix[:2, 2] - 1.0


def eat_aligned_crop(image: np.ndarray, landmarks: np.ndarray, templates: EatTemplates) -> np.ndarray:
    """uint8 [128,128,3]: EAT's warp of `image` (scikit-image, [0,1] floats, ×255 truncated)."""
    matrix = eat_crop_matrix(landmarks, templates.for_landmarks(landmarks))
    warped = warp(np.asarray(image, np.float64) / 255.0, matrix, EAT_WARP)
    return (warped * 255).astype(np.uint8)[1:1 + EAT_CROP, 1:1 + EAT_CROP]


def eat_crop_video(frames: np.ndarray, templates: EatTemplates, models: Optional[DlibModels] = None) -> np.ndarray:
    """EAT's aligned video: each frame cropped on its own; frames without a dlib face (upsample 1)
    are dropped, as EAT's writer drops them. uint8 [T',128,128,3] (T' may be 0)."""
    models = models or dlib_models()
    crops = []
    for frame in frames:
        landmarks = models.first_face68(eat_gray(frame), upsample=1)
        if landmarks is not None:
            crops.append(eat_aligned_crop(frame, landmarks, templates))
    return np.stack(crops) if crops else np.zeros((0, EAT_CROP, EAT_CROP, 3), np.uint8)


def eat_crop_landmarks(crops: np.ndarray, models: Optional[DlibModels] = None) -> np.ndarray:
    """[T,68,2] dlib points on EAT's crops (upsample 0, EAT's gray), NaN where none is found."""
    models = models or dlib_models()
    out = np.full((len(crops), 68, 2), np.nan)
    for i, crop in enumerate(crops):
        found = models.first_face68(eat_gray(crop), upsample=0)
        if found is not None:
            out[i] = found
    return out


# ----------------------------------------------------------------------------- LSE crops

def pcavs_matrices(landmarks: np.ndarray) -> np.ndarray:
    """[T,3,3] frame → 224² crop: one similarity from the clip's mean (left eye, right eye, inner
    mouth) to the PC-AVS triangle, its translation moved each frame so the mouth lands on
    (112, 120), the move smoothed as 0.2·previous + 0.8·current."""
    landmarks = np.asarray(landmarks, np.float64)
    points = np.stack([landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1), landmarks[:, 60:68].mean(1)], 1)
    base = similarity(points.mean(axis=0), PCAVS_TRIANGLE)
    out, previous = [], None
    for tri in points:
        mouth = base[:2, :2] @ tri[2] + base[:2, 2]
        bias = PCAVS_TRIANGLE[2] - mouth
        bias = bias if previous is None else 0.2 * previous + 0.8 * bias
        previous = bias
        m = base.copy()
        m[:2, 2] += bias
        out.append(m)
    return np.stack(out)


def pcavs_crops(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """uint8 [T,224,224,3] PC-AVS crops (bilinear warp, black outside)."""
    return np.stack([rounded_uint8(warp(f.astype(np.float64), np.linalg.inv(m), PCAVS_SIZE))
                     for f, m in zip(frames, pcavs_matrices(landmarks))])


def syncnet_track_boxes(boxes: np.ndarray, kernel: int = 13) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(half size s, centre x, centre y) per frame, each median-filtered (SciPy, zero-padded ends)."""
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, np.float64)
    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    x, y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return medfilt(s, kernel), medfilt(x, kernel), medfilt(y, kernel)


def syncnet_track_crops(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4,
                        size: int = PCAVS_SIZE) -> np.ndarray:
    """uint8 [T,size,size,3]: syncnet_python's crop of a face track (boxes x1, y1, x2, y2)."""
    s, x, y = syncnet_track_boxes(boxes)
    out = []
    for frame, bs, cx, cy in zip(frames, s, x, y):
        pad = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        my, mx = cy + pad, cx + pad
        face = padded[int(my - bs):int(my + bs * (1 + 2 * crop_scale)),
                      int(mx - bs * (1 + crop_scale)):int(mx + bs * (1 + crop_scale))]
        out.append(rounded_uint8(resize_bilinear(face, size)))
    return np.stack(out)


# ----------------------------------------------------------------------------- identity / emotion crops

def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """RetinaFace's 5 points from 68: eye centres (image left first), nose tip, mouth corners."""
    lm = np.asarray(landmarks68, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def arcface_crop(image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """uint8 [112,112,3]: insightface norm_crop on the 5 points (similarity, bilinear, black border)."""
    matrix = similarity(five_points(landmarks68), ARCFACE_TEMPLATE)
    return rounded_uint8(warp(np.asarray(image, np.float64), np.linalg.inv(matrix), ARCFACE_SIZE))


def linear_stretch(image: np.ndarray) -> np.ndarray:
    """Emotion-FAN's LinearEqual: the first channel's used range stretched to 0–255, applied to all."""
    used = np.flatnonzero(np.bincount(image[..., 0].ravel(), minlength=256))
    lo, hi = int(used[0]), int(used[-1])
    if hi == lo:
        return image.copy()
    i = np.arange(256)
    lut = np.where(i < lo, 0, np.where(i > hi, 255, (255.0 * (i - lo) / (hi - lo) + 0.5).astype(np.int64)))
    return lut.astype(np.uint8)[image]


def emotion_face_chip(rgb: np.ndarray, models: Optional[DlibModels] = None, size: int = 224,
                      padding: float = 0.25) -> Optional[np.ndarray]:
    """uint8 [size,size,3] RGB chip, or None: HOG (upsample 1) on the RGB frame, then the CNN
    detector, then the CNN detector after a linear stretch; 5 points of the first face;
    dlib.get_face_chip.  (Emotion-FAN's last two retries, CLAHE and histogram equalisation, need
    OpenCV and are not reproduced.)"""
    models = models or dlib_models()
    img = np.ascontiguousarray(rgb)
    rects = list(models.hog(img, 1))
    if not rects:
        rects = [d.rect for d in models.cnn(img, 1)]
    if not rects:
        img = np.ascontiguousarray(linear_stretch(img))
        rects = [d.rect for d in models.cnn(img, 1)]
    if not rects:
        return None
    shape = models.predictor5(img, rects[0])
    return np.asarray(models.dlib.get_face_chip(img, shape, size=size, padding=padding))


def chips_of(frames: Sequence[np.ndarray], models: Optional[DlibModels] = None) -> List[np.ndarray]:
    found = (emotion_face_chip(f, models) for f in frames)
    return [c for c in found if c is not None]
