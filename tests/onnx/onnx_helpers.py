import math
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "checkpoints" / "synthtalk"
MIN_PSNR_DB = 40.0


def psnr(a: torch.Tensor, b: torch.Tensor, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of two image tensors spanning `peak_to_peak` (frames in [-1, 1]: 2)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak_to_peak ** 2 / mse)
