"""Face-box crops: the one definition the SyncNet expert's training windows
(:mod:`edtalk.data.audio_datasets`) and the evaluation metrics (:mod:`edtalk.eval.metrics`) share."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["face_crops"]


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
