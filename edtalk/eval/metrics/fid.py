"""FID over all frames (spec §9): Fréchet distance of Inception pool3 statistics, generated vs GT.

Statistics accumulate as running sums (count, Σx, Σxxᵀ in float64), so any number of frames fits
in memory.  The network is pytorch-fid's InceptionV3 (pool3, 2048-d) with local weights.
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
    """pytorch-fid's InceptionV3 (pool3, 2048-d) with weights from a local file, never downloaded.

    Returns (network, comparable): the TF-Inception FID weights (1008-class head) are the
    standard; torchvision's ImageNet inception_v3 weights (1000 classes) load too, marked not
    comparable (their FIDs differ from the paper's).
    """
    from ...checkpoints import safe_torch_load

    try:
        state = safe_torch_load(path)
    except Exception as exc:
        raise MetricUnavailable(str(exc)) from None
    return inception_from_state(state, str(path))


def inception_from_state(state: dict, path: str = "the weights"):
    """(network, comparable) for an Inception-v3 state dict (see :func:`load_inception`)."""
    try:
        from pytorch_fid import inception as fid_inception
    except ImportError:
        raise MetricUnavailable("FID needs pytorch-fid (its Inception architecture): pip install pytorch-fid") from None

    head = state.get("fc.weight")
    if head is None:
        raise MetricUnavailable(f"{path} is not an Inception-v3 state dict (no fc.weight)")
    tf_weights = head.shape[0] == 1008

    def torchvision_inception(*args, **kwargs):
        kwargs.update(weights=None, aux_logits="AuxLogits.fc.weight" in state, init_weights=False)
        net = fid_inception.torchvision.models.inception_v3(*args, **kwargs)
        net.load_state_dict(state)
        return net

    try:
        if tf_weights:
            with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
                net = fid_inception.InceptionV3([3], use_fid_inception=True)
        else:
            with mock.patch.object(fid_inception, "_inception_v3", torchvision_inception):
                net = fid_inception.InceptionV3([3], use_fid_inception=False)
    except RuntimeError as exc:
        raise MetricUnavailable(f"{path}: weights do not fit Inception-v3 ({str(exc).splitlines()[0]})") from None
    return net, tf_weights
