"""One evaluated clip: aligned generated / ground-truth frames plus what the metrics share.

Landmarks and face boxes are detected once per frame and reused by LMD, CSIM and the SyncNet
face crops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from ...face.crops import face_crops  # noqa: F401 (shared with the SyncNet training data; importable from here)


@dataclass
class FaceTrack:
    """Per-frame dlib results of one video: landmarks [T,68,2] (NaN where no face), boxes [T,4],
    and which frames had a detection of their own (the others reuse the last box)."""

    landmarks: np.ndarray
    boxes: np.ndarray
    detected: Optional[np.ndarray] = None

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.landmarks).all(axis=(1, 2))

    @property
    def detected_everywhere(self) -> bool:
        found = self.valid if self.detected is None else np.asarray(self.detected, bool)
        return bool(len(found)) and bool(found.all())


def detect_track(frames: np.ndarray, landmarker=None) -> FaceTrack:
    """dlib 68 points on every frame (upsample 0, then 1 when nothing is found).

    A frame without a detection reuses the last found box (faces in aligned crops barely move);
    frames before the first detection have no landmarks.
    """
    from ...face.landmarks import get_landmarker

    landmarker = landmarker or get_landmarker("dlib", upsample=0)
    n = len(frames)
    landmarks = np.full((n, 68, 2), np.nan)
    boxes = np.full((n, 4), np.nan)
    detected = np.zeros(n, bool)
    last = None
    for i, frame in enumerate(frames):
        found = landmarker.detect(frame) or landmarker.detect(frame, upsample=1)
        if found:
            last = max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))[:4]
            detected[i] = True
        if last is None:
            continue
        boxes[i] = last
        landmarks[i] = landmarker.landmarks(frame, last)
    return FaceTrack(landmarks, boxes, detected)


@dataclass
class Clip:
    """Generated and ground-truth frames (uint8 [T,H,W,3]) and the clip's side information.

    The native protocol gives both the same T and size (cut and resized); the EAT protocol keeps
    each video whole and pairs frames after cropping (EAT's order of steps)."""

    name: str
    pred: np.ndarray
    gt: np.ndarray
    wav: Optional[np.ndarray] = None  # 16 kHz mono driving audio (for LSE)
    emotion: Optional[str] = None  # intended MEAD emotion (for Acc_emo)
    source: Optional[np.ndarray] = None  # identity image uint8 [H,W,3] (for CSIM)
    _tracks: Dict[str, FaceTrack] = field(default_factory=dict, repr=False)
    cache: Dict[str, object] = field(default_factory=dict, repr=False)  # per-protocol views (EAT crops)

    def __len__(self) -> int:
        return len(self.pred)

    def track(self, which: str) -> FaceTrack:
        """Landmarks of 'pred', 'gt' or 'source' (detected once, then cached)."""
        if which not in self._tracks:
            frames = {"pred": self.pred, "gt": self.gt}.get(which)
            if which == "source":
                frames = self.source[None] if self.source is not None else self.gt[:1]
            self._tracks[which] = detect_track(frames)
        return self._tracks[which]

    def set_track(self, which: str, track: FaceTrack) -> None:
        self._tracks[which] = track
