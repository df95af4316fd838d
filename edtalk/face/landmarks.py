"""Face detection and 68-point landmark backends.

A backend implements :class:`FaceLandmarker`:

- ``detect(image) -> list[(x1, y1, x2, y2, score)]`` in pixel coordinates of ``image``;
- ``landmarks(image, box) -> np.ndarray [68, 2]`` (x, y) in the iBUG-68 order.

``dlib`` (HOG detector + 68-point shape predictor from ``face-recognition-models``) is the default
and the one the official preprocessing uses (docs/design.md §7.1). ``face_alignment`` and ``mediapipe`` are
optional and imported only when asked for.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import List, Sequence, Tuple

import numpy as np

from ..errors import EDTalkError, InputError

Box = Tuple[float, float, float, float, float]  # x1, y1, x2, y2, score

BACKENDS = ("dlib", "face_alignment", "mediapipe")


def check_image(image) -> np.ndarray:
    """Validate an RGB uint8 image [H,W,3] (grayscale [H,W] is promoted) and return it."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.size == 0:
        raise InputError(f"expected an RGB image [H,W,3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {image.dtype} (convert with (x*255).astype(np.uint8))")
    return image[..., :3]


def to_gray(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded to uint8 (the usual RGB→gray conversion before dlib)."""
    gray = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


class FaceLandmarker:
    """Backend interface: face boxes and 68 landmarks on RGB uint8 images."""

    name = "base"
    num_points = 68

    def detect(self, image: np.ndarray) -> List[Box]:
        raise NotImplementedError

    def landmarks(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def dlib_model_path(filename: str = "shape_predictor_68_face_landmarks.dat") -> str:
    """Path of a model file shipped in `face_recognition_models`.

    Located without importing the package: its __init__ needs `pkg_resources`, which recent
    setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EDTalkError("the dlib landmark model is missing: pip install face-recognition-models")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", filename)
    if not os.path.isfile(path):
        raise EDTalkError(f"dlib model file not found: {path} (reinstall face-recognition-models)")
    return path


class DlibLandmarker(FaceLandmarker):
    """dlib HOG frontal-face detector on grayscale + the 68-point shape predictor.

    `upsample` is the detector's pyramid upsampling: 1 finds faces down to ~40 px (the official
    image crop), 0 is ~4x faster and finds faces from ~80 px.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise EDTalkError("the dlib face backend needs dlib: pip install dlib-bin (or dlib)") from None
        self.upsample = int(upsample)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(dlib_model_path())
        self._dlib = dlib

    def detect(self, image: np.ndarray, upsample: int = None) -> List[Box]:
        gray = to_gray(check_image(image))
        up = self.upsample if upsample is None else int(upsample)
        rects, scores, _ = self._detector.run(gray, up, 0.0)
        return [(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(s))
                for r, s in zip(rects, scores)]

    def landmarks(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        gray = to_gray(check_image(image))
        rect = self._dlib.rectangle(*(int(round(v)) for v in box[:4]))
        shape = self._predictor(gray, rect)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)

    def __repr__(self) -> str:
        return f"DlibLandmarker(upsample={self.upsample})"


class FaceAlignmentLandmarker(FaceLandmarker):
    """`face_alignment` (S3FD detector + 2D-FAN landmarks), CPU. Weights download on first use."""

    name = "face_alignment"

    def __init__(self, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError:
            raise EDTalkError("the face_alignment backend is not installed: pip install face-alignment") from None
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
        self._fa = face_alignment.FaceAlignment(kind, device=device, flip_input=False)

    def detect(self, image: np.ndarray) -> List[Box]:
        image = check_image(image)
        # The S3FD detector of face_alignment takes BGR input.
        found = self._fa.face_detector.detect_from_image(np.ascontiguousarray(image[..., ::-1]))
        return [tuple(float(v) for v in (*b[:4], b[4] if len(b) > 4 else 1.0)) for b in (found or [])]

    def landmarks(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        image = check_image(image)
        out = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(box[:4], dtype=np.float64)])
        if not out:
            raise EDTalkError("face_alignment returned no landmarks for the detected face")
        return np.asarray(out[0], dtype=np.float64)[:, :2]


class MediapipeLandmarker(FaceLandmarker):
    """MediaPipe face detection. Detection only: its 468-point mesh has no exact iBUG-68
    correspondence, so it cannot drive the 68-point template alignment (§7.1)."""

    name = "mediapipe"

    def __init__(self, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_confidence)
        except ImportError:
            raise EDTalkError("the mediapipe backend is not installed: pip install mediapipe") from None
        except AttributeError:
            raise EDTalkError("this mediapipe version lacks the `solutions.face_detection` API; "
                              "pip install 'mediapipe<0.10.22'") from None

    def detect(self, image: np.ndarray) -> List[Box]:
        image = check_image(image)
        h, w = image.shape[:2]
        result = self._detector.process(np.ascontiguousarray(image))
        boxes = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            x1, y1 = rb.xmin * w, rb.ymin * h
            boxes.append((x1, y1, x1 + rb.width * w, y1 + rb.height * h, float(det.score[0])))
        return boxes

    def landmarks(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        raise EDTalkError("the mediapipe backend gives no 68-point landmarks, so it cannot align a face "
                          "to the template; use --face-backend dlib (or face_alignment) for image crops")


_CLASSES = {"dlib": DlibLandmarker, "face_alignment": FaceAlignmentLandmarker, "mediapipe": MediapipeLandmarker}


@functools.lru_cache(maxsize=8)
def _cached(name: str, options: tuple) -> FaceLandmarker:
    return _CLASSES[name](**dict(options))


def get_landmarker(name="dlib", **options) -> FaceLandmarker:
    """Return a (cached) backend by name; a FaceLandmarker instance is passed through unchanged."""
    if isinstance(name, FaceLandmarker):
        return name
    if name is None:
        name = "dlib"
    key = str(name).lower().replace("-", "_")
    if key not in _CLASSES:
        raise EDTalkError(f"unknown face backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return _cached(key, tuple(sorted(options.items())))
