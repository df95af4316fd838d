"""Mouth-swap cross images for stage 1 (docs/design.md §7.4).

``mouth_swap(face, face_lm, mouth, mouth_lm)`` returns `face` with the mouth of `mouth`:

1. anchors of each image: the means of landmarks 36–41, 42–47 (eyes) and 60–67 (inner mouth);
2. least-squares similarity M from the mouth image's anchors to the face image's anchors,
   with the translation fixed so the inner-mouth centres coincide exactly;
3. `mouth` warped by M (bilinear, black outside) into a canvas of the face image's size (the
   official code used a 224² canvas for 256² frames: bug 7);
4. box = [int(min x − m), int(min y − m), int(max x + m), int(max y + m)] over the face image's
   landmarks 48–67, m = 5 px at 256² (scaled with the frame size), clipped to the frame;
5. the box of the warped image hard-pasted into a copy of `face` (no blending).

Stage-1 items use it both ways: ``a_b = mouth_swap(a, lm_a, b, lm_b)`` is a's face with b's mouth,
``b_a = mouth_swap(b, lm_b, a, lm_a)``.  Only the box is warped (same pixels, less work).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from edtalk.face.geometry import apply, umeyama

__all__ = ["anchors", "mouth_box", "swap_matrix", "mouth_swap", "BOX_MARGIN_256"]

BOX_MARGIN_256 = 5.0  # pixels of margin around the lips at 256²


def anchors(landmarks: np.ndarray) -> np.ndarray:
    """[3,2]: left-eye, right-eye and inner-mouth centres of 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[60:68].mean(0)])


def mouth_box(landmarks: np.ndarray, frame_size: int) -> Tuple[int, int, int, int]:
    """(x1, y1, x2, y2) around lips 48–67, clipped to a frame_size² image; x2/y2 exclusive."""
    lips = np.asarray(landmarks, dtype=np.float64)[48:68]
    m = BOX_MARGIN_256 * frame_size / 256.0
    x1, y1 = int(lips[:, 0].min() - m), int(lips[:, 1].min() - m)
    x2, y2 = int(lips[:, 0].max() + m), int(lips[:, 1].max() + m)
    clip = lambda v: min(max(v, 0), frame_size)  # noqa: E731
    return clip(x1), clip(y1), clip(x2), clip(y2)


def swap_matrix(mouth_lm: np.ndarray, face_lm: np.ndarray) -> np.ndarray:
    """3×3 similarity mapping mouth-image coordinates onto the face image, mouth centres pinned."""
    src, dst = anchors(mouth_lm), anchors(face_lm)
    m = umeyama(src, dst)
    m[:2, 2] += dst[2] - apply(m, src[2:3])[0]
    return m


def _warp_box(image: np.ndarray, matrix: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of `image` warped by `matrix` (image → canvas), for the canvas box only."""
    from skimage.transform import AffineTransform, warp

    x1, y1, x2, y2 = box
    # Box pixel (u, v) is canvas pixel (u + x1, v + y1) and samples the image at M⁻¹ of that.
    shift = np.array([[1.0, 0.0, x1], [0.0, 1.0, y1], [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(matrix) @ shift
    out = warp(image.astype(np.float32), AffineTransform(matrix=inverse), output_shape=(y2 - y1, x2 - x1),
               order=1, mode="constant", cval=0.0, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def mouth_swap(face: np.ndarray, face_lm: np.ndarray, mouth: np.ndarray, mouth_lm: np.ndarray) -> np.ndarray:
    """uint8 [S,S,3]: `face` with the mouth region of `mouth` (both S² frames with 68 landmarks)."""
    face = np.asarray(face)
    mouth = np.asarray(mouth)
    if face.shape != mouth.shape or face.ndim != 3 or face.shape[0] != face.shape[1]:
        raise ValueError(f"need two square frames of one size, got {face.shape} and {mouth.shape}")
    out = face.copy()
    box = mouth_box(face_lm, face.shape[0])
    x1, y1, x2, y2 = box
    if x2 > x1 and y2 > y1:
        out[y1:y2, x1:x2] = _warp_box(mouth, swap_matrix(mouth_lm, face_lm), box)
    return out
