"""FID: Fréchet distance of Inception pool3 statistics (2048-d), generated vs ground-truth frames.

Statistics accumulate as running sums (count, Σx, Σxxᵀ in float64), so any number of frames fits
in memory.  Two networks, chosen by the weight file (never downloaded):

- **torchvision ImageNet Inception-v3** (``inception_v3_google-0cc3c7bd.pth``), fed as EAT's
  ``utils_fid.py`` feeds ``inception_v3(pretrained=True)``: frames in BGR order, [0,1] floats
  resized to 299² (bilinear, OpenCV's geometry), ×2−1, ``transform_input=True``, the average
  pool of Mixed_7c.  The EAT protocol's network.
- **TF-Inception** (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``), fed as pytorch-fid
  feeds it (RGB, bilinear 299², ×2−1): the field's usual FID, not EAT's.

Which frames go in is the protocol's: :func:`sample_indices` is EAT's 5 frames per clip.
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch

from .pixel import to_tensor
from .registry import MetricUnavailable


class FeatureStats:
    """Running mean / covariance of feature rows."""

    def __init__(self):
        self.n, self.sum, self.outer = 0, None, None

    def update(self, feats: np.ndarray) -> None:
        f = np.asarray(feats, np.float64).reshape(len(feats), -1)
        if self.sum is None:
            self.sum, self.outer = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
        self.n += len(f)
        self.sum += f.sum(axis=0)
        self.outer += f.T @ f

    def mean_cov(self):
        mu = self.sum / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / max(1, self.n - 1)
        return mu, cov


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).

    Tr((Σ₁Σ₂)^½) is computed as Σ√λ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same eigenvalues),
    which stays real and stable for the singular covariances of few frames (pytorch-fid's
    complex `sqrtm` route needs an ε fallback there and uses a SciPy argument that is going away).
    """
    (mu1, s1), (mu2, s2) = a.mean_cov(), b.mean_cov()
    root = _psd_sqrt(s1)
    eig = np.linalg.eigvalsh(root @ s2 @ root)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


EAT_FRAMES_PER_CLIP = 5
TORCHVISION_SHA256_PREFIX = "0cc3c7bd"  # inception_v3_google-0cc3c7bd.pth
TF_FID_SHA256_PREFIX = "6726825d"  # pt_inception-2015-12-05-6726825d.pth


def sample_indices(length: int, count: int = EAT_FRAMES_PER_CLIP) -> np.ndarray:
    """EAT's FID frames of a clip: ⌊linspace(0, length, min(length, count), endpoint=False)⌋."""
    return np.linspace(0, length, min(length, count), endpoint=False).astype(np.int32)


class EatInception(torch.nn.Module):
    """torchvision Inception-v3 as EAT uses it: [N,3,H,W] RGB in [0,1] → [N,2048] (see module doc)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        net.fc = torch.nn.Identity()  # eval: avgpool(Mixed_7c) → (no-op dropout) → flatten
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.flip(1), size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x * 2 - 1)


class FIDMetric:
    """Accumulates features of generated and GT frames; `feature_net` maps [N,3,H,W] in [0,1] to [N,D]."""

    def __init__(self, feature_net: torch.nn.Module, device="cpu", batch: int = 32, comparable: bool = True):
        self.net = feature_net.to(device).eval().requires_grad_(False)
        self.device, self.batch, self.comparable = device, batch, comparable
        self.pred, self.gt = FeatureStats(), FeatureStats()

    @torch.inference_mode()
    def features(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(frames), self.batch):
            feats = self.net(to_tensor(frames[s:s + self.batch]).to(self.device))
            feats = feats[-1] if isinstance(feats, (list, tuple)) else feats
            out.append(feats.flatten(1).double().cpu().numpy())
        return np.concatenate(out)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.pred.update(self.features(pred))
        self.gt.update(self.features(gt))

    def result(self) -> float:
        if self.pred.n < 2 or self.gt.n < 2:
            raise MetricUnavailable("FID needs at least 2 frames per side")
        return frechet_distance(self.pred, self.gt)


def load_inception(path: Path):
    """(network, kind) for a local Inception-v3 weight file; kind is 'torchvision' or 'tf'."""
    from ...checkpoints import safe_torch_load

    try:
        state = safe_torch_load(path)
    except Exception as exc:
        raise MetricUnavailable(str(exc)) from None
    return inception_from_state(state, str(path))


def inception_from_state(state: dict, path: str = "the weights"):
    """(network, kind) for an Inception-v3 state dict: a 1008-class head is pytorch-fid's
    TF-Inception ('tf'), 1000 classes torchvision's ImageNet network ('torchvision', EAT's)."""
    try:
        from pytorch_fid import inception as fid_inception
    except ImportError:
        raise MetricUnavailable("FID needs pytorch-fid (its Inception architecture): pip install pytorch-fid") from None

    head = state.get("fc.weight")
    if head is None:
        raise MetricUnavailable(f"{path} is not an Inception-v3 state dict (no fc.weight)")
    tf_weights = head.shape[0] == 1008

    try:
        if tf_weights:
            with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
                return fid_inception.InceptionV3([3], use_fid_inception=True), "tf"
        import torchvision

        net = torchvision.models.inception_v3(weights=None, aux_logits="AuxLogits.fc.weight" in state,
                                              transform_input=True, init_weights=False)
        net.load_state_dict(state)
        return EatInception(net), "torchvision"
    except RuntimeError as exc:
        raise MetricUnavailable(f"{path}: weights do not fit Inception-v3 ({str(exc).splitlines()[0]})") from None
