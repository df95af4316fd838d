"""One evaluated clip: aligned generated / ground-truth frames plus what the metrics share.

Landmarks and face boxes are detected once per frame and reused by LMD, CSIM and the SyncNet
face crops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F


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


def face_crops(frames: np.ndarray, boxes: Optional[np.ndarray] = None, size: int = 96, scale: float = 1.0,
               square: bool = False) -> torch.Tensor:
    """[T,3,size,size] float RGB in [0,1]: each frame's face box (× `scale` about its centre, made
    square if asked; edge-padded where it leaves the frame) resized to size² (bilinear,
    antialiased); the whole frame where a frame has no box."""
    out = []
    h, w = frames.shape[1:3]
    for i, frame in enumerate(frames):
        if boxes is not None and np.isfinite(boxes[i]).all():
            cx, cy = (boxes[i][0] + boxes[i][2]) / 2, (boxes[i][1] + boxes[i][3]) / 2
            bw, bh = boxes[i][2] - boxes[i][0], boxes[i][3] - boxes[i][1]
            if square:
                bw = bh = max(bw, bh)
            x1, y1 = int(round(cx - scale * bw / 2)), int(round(cy - scale * bh / 2))
            x2, y2 = max(x1 + 1, int(round(cx + scale * bw / 2))), max(y1 + 1, int(round(cy + scale * bh / 2)))
            pad = ((max(0, -y1), max(0, y2 - h)), (max(0, -x1), max(0, x2 - w)), (0, 0))
            frame = np.pad(frame, pad, mode="edge")[y1 + pad[0][0]:y2 + pad[0][0], x1 + pad[1][0]:x2 + pad[1][0]]
        crop = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0])
    return torch.stack(out)


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
