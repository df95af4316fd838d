"""Optional face restoration after generation, like the official `--face_sr`: GFPGAN, ×2 (256 → 512).

An add-on, not part of the model (docs/design.md §5.5). It needs the `gfpgan` package
(`pip install 'edtalk[face-sr]'`) and its weights as a local file (e.g. `GFPGANv1.4.pth`), given
with `--face-sr-weights` or `$EDTALK_GFPGAN_WEIGHTS`; nothing is downloaded.

API (what generation calls on each batch of output frames)::

    check_face_restoration(weights=None) -> Path      # one InputError before any work when unusable
    restorer = FaceRestorer(weights=None, device="cpu", batch_size=4)
    restorer(frames)   # uint8 [B,H,W,3] RGB -> uint8 [B,2H,2W,3] RGB, same frame order

The generated crops are template-aligned (docs/design.md §7.1), which places eyes and mouth within a few
pixels of where GFPGAN's 512² aligned faces have them, so the network runs on the crop resized to
512² directly (GFPGAN's `has_aligned` path): no face detector and no detector weights.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError, InputError

WEIGHTS_ENV = "EDTALK_GFPGAN_WEIGHTS"
NET_SIZE = 512  # GFPGAN works on 512² aligned faces
UPSCALE = 2


def gfpgan_available() -> bool:
    return importlib.util.find_spec("gfpgan") is not None


def check_face_restoration(weights: Optional[str] = None) -> Path:
    """The GFPGAN weights file to use; InputError (one line) when the package or the file is missing."""
    if not gfpgan_available():
        raise InputError("--face-sr needs the gfpgan package: pip install 'edtalk[face-sr]' (or pip install gfpgan)")
    path = weights or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise InputError(f"--face-sr needs GFPGAN weights (e.g. GFPGANv1.4.pth): pass --face-sr-weights FILE or "
                         f"set ${WEIGHTS_ENV}; nothing is downloaded")
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"GFPGAN weights not found: {path}")
    _gfpgan_class()  # a broken install fails here too, before any work
    return path


def _gfpgan_class():
    """GFPGAN's 'clean' architecture class (InputError with the reason when gfpgan cannot be imported)."""
    # basicsr (a gfpgan dependency) imports torchvision.transforms.functional_tensor, which
    # torchvision 0.17 removed; its functions live on in torchvision.transforms.functional.
    if importlib.util.find_spec("torchvision.transforms.functional_tensor") is None:
        import torchvision.transforms.functional as functional

        sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)
    try:
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    except ImportError as exc:
        raise InputError(f"the gfpgan package failed to import: {exc}") from None
    return GFPGANv1Clean


def load_gfpgan(path: Path) -> torch.nn.Module:
    """GFPGAN v1.3/v1.4 ('clean' architecture, as GFPGANer builds it) with the file's EMA weights."""
    from ..checkpoints import load_state_dict_strict, safe_torch_load

    state = safe_torch_load(path)
    state = state.get("params_ema", state.get("params", state)) if isinstance(state, dict) else state
    arch = _gfpgan_class()
    net = arch(out_size=NET_SIZE, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
               num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a GFPGAN weights file (it holds a {type(state).__name__})")
    load_state_dict_strict(net, state, f"GFPGAN ({path.name}; v1.3/v1.4 expected)")
    return net


class FaceRestorer:
    """GFPGAN on batches of generated faces: uint8 [B,H,W,3] RGB → uint8 [B,2H,2W,3] RGB."""

    def __init__(self, weights: Optional[str] = None, device="cpu", batch_size: int = 4):
        path = check_face_restoration(weights)
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.net = load_gfpgan(path).to(self.device).eval().requires_grad_(False)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"face restoration takes uint8 RGB frames [B,H,W,3], got {frames.dtype} {frames.shape}")
        height, width = frames.shape[1:3]
        out = np.empty((len(frames), UPSCALE * height, UPSCALE * width, 3), dtype=np.uint8)
        for s in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[s:s + self.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # GFPGAN's [-1,1] RGB
            x = _resize(x, (NET_SIZE, NET_SIZE)).clamp(-1, 1).contiguous()  # bicubic overshoots; NCHW layout
            y = self._restore(x)
            y = _resize(y, (UPSCALE * height, UPSCALE * width))
            out[s:s + len(x)] = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return out

    def _restore(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x, return_rgb=False)
        return (y[0] if isinstance(y, (tuple, list)) else y).float()


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=x.shape[-1] > size[-1])
