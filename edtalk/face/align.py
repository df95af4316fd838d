"""Template face crop (docs/design.md §7.1): 68 landmarks → similarity to a fixed template → 256² warp."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import FaceNotFoundError, InputError
from .geometry import CropParams, umeyama
from .landmarks import FaceLandmarker, box_area, check_image, get_landmarker

TEMPLATE_SIZE = 256

# The official 68-point template (x, y) in a 256² frame (the `M003_template` file).
TEMPLATE_68 = np.array([
    # 0–16 jaw
    (61, 119), (62, 137), (65, 156), (69, 173), (75, 189), (86, 203), (101, 213), (117, 221), (135, 224),
    (152, 221), (165, 211), (175, 199), (183, 184), (187, 168), (189, 151), (192, 135), (194, 118),
    # 17–26 brows, 27–35 nose
    (77, 109), (87, 99), (102, 95), (117, 96), (132, 101), (146, 101), (159, 98), (171, 97), (183, 100),
    (190, 110), (140, 111), (140, 121), (142, 132), (143, 143), (127, 154), (134, 155), (141, 157),
    (147, 155), (152, 153),
    # 36–47 eyes
    (94, 114), (102, 109), (111, 109), (118, 114), (111, 116), (102, 116), (154, 115), (161, 109),
    (170, 110), (176, 114), (170, 117), (162, 116),
    # 48–67 mouth
    (112, 180), (123, 175), (133, 172), (139, 174), (146, 172), (155, 175), (161, 180), (154, 187),
    (146, 190), (139, 190), (132, 189), (122, 186), (117, 180), (132, 178), (139, 178), (146, 178),
    (158, 180), (146, 181), (139, 181), (132, 181),
], dtype=np.float64)

# Jaw, brows, nose and eyes; point 47 is excluded, as officially.
ALIGN_POINTS = slice(0, 47)

# Images larger than this are detected on a downscaled copy (HOG with upsampling on a 12 MP
# photo takes seconds and GBs); landmarks still run at full resolution.
DETECT_MAX_SIDE = 1600


@dataclass
class TemplateCrop(CropParams):
    """A §7.1 crop: `matrix` (template pixel → frame pixel, at `size`), plus the landmarks used."""

    landmarks: Optional[np.ndarray] = None
    kind: str = "template"


def estimate_transform(landmarks: np.ndarray) -> np.ndarray:
    """3×3 similarity mapping 256² template coordinates to image coordinates (points 0–46)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 47 or landmarks.shape[1] != 2:
        raise InputError(f"expected 68 landmarks [68,2], got shape {landmarks.shape}")
    if not np.isfinite(landmarks[ALIGN_POINTS]).all():
        raise InputError("landmarks contain NaN or inf")
    return umeyama(TEMPLATE_68[ALIGN_POINTS], landmarks[ALIGN_POINTS])


def warp_to_template(image: np.ndarray, matrix: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """Sample `image` at matrix·(x, y, 1) for every output pixel: bilinear, 0 outside.

    Input scaled to [0,1]; output ×255 truncated to uint8, as the official crop does.
    """
    from skimage.transform import AffineTransform, warp

    img = np.asarray(image, dtype=np.float64) / 255.0
    out = warp(img, AffineTransform(matrix=matrix), output_shape=(size, size), order=1,
               mode="constant", cval=0.0, clip=False, preserve_range=True)
    return (np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def _downscale(image: np.ndarray, max_side: Optional[int]) -> Tuple[np.ndarray, float]:
    """Copy of `image` with max side ≤ max_side, and the factor to map its coordinates back."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    from PIL import Image

    scale = max_side / max(h, w)
    small = Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return np.asarray(small), 1.0 / scale


def find_face(image: np.ndarray, landmarker: FaceLandmarker, detect_max_side: Optional[int] = DETECT_MAX_SIDE,
              what: str = "the image") -> Tuple[float, float, float, float, float]:
    """The largest detected face box; FaceNotFoundError if none, a warning if several."""
    small, back = _downscale(image, detect_max_side)
    boxes = landmarker.detect(small)
    if not boxes:
        raise FaceNotFoundError(f"no face found in {what} ({image.shape[1]}x{image.shape[0]}); "
                                "use a frontal, well-lit face at least ~50 px wide, or disable cropping")
    best = max(boxes, key=box_area)
    if len(boxes) > 1:
        warnings.warn(f"{len(boxes)} faces found in {what}; using the largest", stacklevel=4)
    return tuple(v * back for v in best[:4]) + (best[4],)


def image_landmarks(image: np.ndarray, landmarker: Union[str, FaceLandmarker, None] = None,
                    detect_max_side: Optional[int] = DETECT_MAX_SIDE, what: str = "the image") -> np.ndarray:
    """68 landmarks [68,2] of the largest face in an RGB uint8 image."""
    image = check_image(image)
    backend = get_landmarker(landmarker or "dlib")
    box = find_face(image, backend, detect_max_side, what)
    return backend.landmarks(image, box)


def _resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if crop.shape[0] == size:
        return crop
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))


def crop_image(image: np.ndarray, landmarks: Optional[np.ndarray] = None, size: int = TEMPLATE_SIZE,
               landmarker: Union[str, FaceLandmarker, None] = None) -> Tuple[np.ndarray, TemplateCrop]:
    """Align the (largest) face of an RGB uint8 image to the 256² template (docs/design.md §7.1).

    Args:
        image: RGB uint8 [H,W,3].
        landmarks: optional precomputed 68 landmarks [68,2]; detection is skipped.
        size: output side. The crop is always made at 256 and, if needed, PIL-bicubic resized.
        landmarker: backend name ("dlib", "face_alignment") or a FaceLandmarker instance.

    Returns:
        (crop uint8 [size,size,3], TemplateCrop) — the params invert the crop for paste-back.
    """
    image = check_image(image)
    if landmarks is None:
        landmarks = image_landmarks(image, landmarker)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    matrix = estimate_transform(landmarks)
    crop = _resize_square(warp_to_template(image, matrix, TEMPLATE_SIZE), int(size))
    params = TemplateCrop(matrix=matrix, size=TEMPLATE_SIZE, frame_shape=image.shape[:2], landmarks=landmarks)
    return crop, params


def crop_video_to_template(frames: np.ndarray, landmarks: Optional[np.ndarray] = None, size: int = TEMPLATE_SIZE,
                           landmarker: Union[str, FaceLandmarker, None] = None) -> Tuple[np.ndarray, TemplateCrop]:
    """§7.1 video variant: the template transform of the first frame, applied to every frame.

    Suits clips with a nearly static head; use `crop_video` (face tube) otherwise.
    """
    frames = _check_frames(frames)
    if landmarks is None:
        landmarks = image_landmarks(frames[0], landmarker, what="the first video frame")
    matrix = estimate_transform(landmarks)
    crops = np.stack([_resize_square(warp_to_template(f, matrix, TEMPLATE_SIZE), int(size)) for f in frames])
    params = TemplateCrop(matrix=matrix, size=TEMPLATE_SIZE, frame_shape=frames.shape[1:3],
                          landmarks=np.asarray(landmarks, dtype=np.float64))
    return crops, params


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"expected non-empty uint8 RGB frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    return frames


def template_landmark_error(crop: np.ndarray, landmarker: Union[str, FaceLandmarker, None] = None,
                            points: Sequence[int] = range(68)) -> float:
    """Mean distance (px at 256) between the landmarks found in a crop and the template: a quick
    check that a crop is well aligned."""
    crop = _resize_square(check_image(crop), TEMPLATE_SIZE)
    found = image_landmarks(crop, landmarker, what="the crop")
    idx = list(points)
    return float(np.linalg.norm(found[idx] - TEMPLATE_68[idx], axis=1).mean())
