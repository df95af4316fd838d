"""CSIM: cosine similarity of identity embeddings, source image vs every generated frame.

The field's network is ArcFace (a user-supplied TorchScript / .pt2 file) on insightface's
``norm_crop``: the 5 points (eye centres, nose tip, mouth corners, here from dlib's 68) warped by
a similarity onto the ArcFace template at 112² (:func:`.align.arcface_crop`); without that
alignment ArcFace scores run low.  Offline stand-in: dlib's face-recognition ResNet (128-d,
shipped by `face-recognition-models`, on its own 68-point chip) — not comparable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .align import arcface_crop
from .pixel import to_tensor
from .registry import load_user_network


def cosine_to_reference(reference: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    r = reference / np.linalg.norm(reference)
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return e @ r


class DlibIdentity:
    """dlib_face_recognition_resnet_model_v1 on the 68-point shapes we already detected."""

    comparable = False
    name = "dlib face-recognition ResNet (face-recognition-models)"

    def __init__(self):
        import dlib

        from ...face.landmarks import dlib_model_path

        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, frames: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        out = []
        for frame, box, pts in zip(frames, boxes, landmarks):
            rect = self._dlib.rectangle(*(int(round(v)) for v in box))
            shape = self._dlib.full_object_detection(rect, [self._dlib.point(int(x), int(y)) for x, y in pts])
            out.append(np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(frame), shape)))
        return np.asarray(out, dtype=np.float64)


class TorchScriptIdentity:
    """A user ArcFace (TorchScript or torch.export .pt2): [N,3,112,112] RGB in [-1,1] (insightface's
    (x − 127.5)/127.5 on the norm_crop) → [N,D] embeddings."""

    comparable = True
    name = "ArcFace (user file)"

    def __init__(self, path: Path, device="cpu", batch: int = 32):
        self.net = load_user_network(path, "ArcFace network", device)
        self.device, self.batch = device, batch

    @torch.inference_mode()
    def embed(self, frames: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x = to_tensor(np.stack([arcface_crop(f, lm) for f, lm in zip(frames, landmarks)])) * 2 - 1
        return torch.cat([self.net(x[s:s + self.batch].to(self.device)).float().cpu()
                          for s in range(0, len(x), self.batch)]).double().numpy()


def csim(embedder, source_track, source: np.ndarray, pred_track, pred: np.ndarray):
    """(mean CSIM over frames with a face, number of such frames); (None, 0) without a face."""
    valid = pred_track.valid
    if not source_track.valid[0] or not valid.any():
        return None, 0
    ref = embedder.embed(source[None], source_track.boxes[:1], source_track.landmarks[:1])[0]
    emb = embedder.embed(pred[valid], pred_track.boxes[valid], pred_track.landmarks[valid])
    sims = cosine_to_reference(ref, emb)
    return float(sims.mean()), int(valid.sum())
