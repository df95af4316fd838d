"""PSNR / SSIM (scikit-image, docs/design.md §9) and LPIPS (the `lpips` package's network)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .registry import MetricUnavailable

def psnr_frames(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 RGB frames [T,H,W,3], MAX 255 (scikit-image); identical
    frames give +inf, as in the reference, so a mean over them is inf too (no silent cap)."""
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):  # MSE 0 → inf, on purpose
        return np.asarray([peak_signal_noise_ratio(g, p, data_range=255) for p, g in zip(pred, gt)], np.float64)


def ssim_frames(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame SSIM: scikit-image defaults (7×7 uniform window), channel axis last, range 255."""
    from skimage.metrics import structural_similarity

    return np.asarray([structural_similarity(g, p, channel_axis=-1, data_range=255)
                       for p, g in zip(pred, gt)], dtype=np.float64)


def to_tensor(frames: np.ndarray, low: float = 0.0) -> torch.Tensor:
    """uint8 [T,H,W,3] → float [T,3,H,W] in [low, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return x * (1 - low) + low


class LPIPSMetric:
    """LPIPS v0.1 (AlexNet trunk) from the `lpips` package; the trunk's ImageNet weights come from
    a local torchvision AlexNet state dict (the package would download them)."""

    def __init__(self, backbone_path: Path, device="cpu", batch: int = 16):
        try:
            import lpips
        except ImportError:
            raise MetricUnavailable("the lpips package is not installed: pip install lpips") from None
        import torchvision

        from ...checkpoints import safe_torch_load

        features = torchvision.models.alexnet().features
        try:
            state = safe_torch_load(backbone_path)
            # only the convolutional trunk is used: a full AlexNet or its `features.*` part both load
            features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        except Exception as exc:  # wrong file: say so in one line
            raise MetricUnavailable(f"{backbone_path} is not a torchvision AlexNet state dict ({str(exc).splitlines()[0]})") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # lpips asks torchvision with the old `pretrained=` argument
            net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        for slice_ in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
            for index, module in slice_.named_children():  # slices keep AlexNet's feature indices
                module.load_state_dict(features[int(index)].state_dict())
        self.net = net.to(device).eval().requires_grad_(False)
        self.device, self.batch = device, batch

    @torch.inference_mode()
    def frames(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(pred), self.batch):
            p = to_tensor(pred[s:s + self.batch], -1.0).to(self.device)
            g = to_tensor(gt[s:s + self.batch], -1.0).to(self.device)
            out.append(self.net(p, g).flatten().cpu().double().numpy())
        return np.concatenate(out)
