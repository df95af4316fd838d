"""SyncNet expert (docs/design.md §2.10): the Wav2Lip-style lip-sync discriminator, trained on a layout tree.

Data: :class:`edtalk.data.audio_datasets.SyncNetPairs` — half in-sync pairs (5 face crops'
lower halves in [0,1], frame-major, with the mel window of frame r+2), half shifted (a window
≥ 5 frames away, or another clip).  Loss: BCE(cos(a, v) clamped to (0,1), label).

Init (`model.init_path`): none (random), Wav2Lip's `lipsync_expert.pth` (`face_encoder.*`,
`audio_encoder.*` under 'state_dict'; `module.` prefixes stripped) or our saved folder.  Export:
`export/model/` (config.json + model.safetensors) — the folder the LSE stand-in loads
(`edtalk evaluate --syncnet DIR`, :func:`edtalk.networks.syncnet.load_syncnet`).
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from ...errors import EDTalkError, InputError
from ...networks.syncnet import SyncNet, SyncNetConfig, load_syncnet
from ..stage import Stage, register_stage
from ..trainer import import_object

__all__ = ["SyncNetStage", "sync_probability", "sync_bce", "check_face_range", "build_syncnet", "sync_preference"]

SYNCNET_DEFAULTS = {
    "model": {
        "face_channels": [32, 64, 128, 256, 512],   # Wav2Lip's widths (official expert)
        "audio_channels": [32, 64, 128, 256, 512],
        "init_path": None,       # Wav2Lip lipsync_expert.pth or our saved SyncNet folder
    },
    "data": {"min_shift": 5, "other_clip": 0.0},
    "optim": {"syncnet": {"lr": 1e-4}},
}
EPS = 1e-6


def check_face_range(faces: torch.Tensor) -> None:
    """The expert takes crops in [0,1]; [-1,1] crops (official bug 8) are a caller mistake."""
    low = float(faces.detach().min())
    if low < -1e-3:
        raise InputError(f"SyncNet face crops must be in [0,1] (got values down to {low:.2f}); "
                         "convert [-1,1] images with (x + 1) / 2")


def sync_probability(net: SyncNet, mels: torch.Tensor, faces: torch.Tensor, check: bool = True) -> torch.Tensor:
    """cos(a, v) of each pair, clamped to (0,1): the expert's P(in sync).  faces [B,15,48,96] in [0,1]."""
    if check:
        check_face_range(faces)
    audio, video = net(mels, faces)
    return SyncNet.sync_score(audio, video).float().clamp(EPS, 1 - EPS)


def sync_bce(net: SyncNet, mels: torch.Tensor, faces: torch.Tensor, labels: torch.Tensor, check: bool = True):
    """BCE(P(in sync), label) averaged over the batch."""
    return F.binary_cross_entropy(sync_probability(net, mels, faces, check), labels.float())


def build_syncnet(model_cfg) -> SyncNet:
    """A random expert of the configured widths, or the weights at `model_cfg.init_path`."""
    if model_cfg.init_path:
        return load_syncnet(model_cfg.init_path).train()
    config = SyncNetConfig(face_channels=tuple(model_cfg.face_channels), audio_channels=tuple(model_cfg.audio_channels))
    return SyncNet(config)


@register_stage("syncnet")
class SyncNetStage(Stage):
    default_config = SYNCNET_DEFAULTS

    def build_models(self):
        return {"syncnet": build_syncnet(self.cfg.model).train()}

    def ema_models(self) -> List[str]:
        return ["syncnet"]

    def build_dataset(self):
        d = self.cfg.data
        cls = import_object(str(d.dataset or "edtalk.data.audio_datasets:SyncNetPairs"))
        try:
            extra = {"length": int(d.length)} if d.length else {}
            return cls(str(d.root), split=str(d.split), seed=int(self.cfg.seed), min_shift=int(d.min_shift),
                       other_clip=float(d.other_clip), **extra)
        except FileNotFoundError as exc:
            raise EDTalkError(f"data.root {d.root}: {exc}") from None

    def train_step(self, batch, ctx):
        net = self.models["syncnet"]
        with ctx.autocast():
            prob = sync_probability(net, batch["mel"], batch["faces"])
            loss = F.binary_cross_entropy(prob, batch["label"].float())
        ctx.optimize("syncnet", loss)
        correct = ((prob.detach() > 0.5).float() == batch["label"]).float().mean()
        return {"bce": loss.detach(), "acc": correct}

    def export(self, out_dir, ctx) -> List[str]:
        """Our folder (config.json + model.safetensors) under export/model: the LSE metric's input."""
        return [str(ctx.ema_model("syncnet").save_pretrained(Path(out_dir) / "model"))]


@torch.no_grad()
def sync_preference(net: SyncNet, dataset, shift: int = 5) -> dict:
    """How often the expert scores each window's in-sync audio above the audio shifted by ±`shift`
    frames, over every 5-frame window of every clip of a SyncNetPairs `dataset`."""
    from ...data.audio_datasets import sync_face_window, sync_window_index

    net.eval()
    wins = total = 0
    for name in dataset.names:
        n, mels = dataset.usable(name), torch.from_numpy(dataset.mels(name))[:, None]
        for r in range(n - 4):
            faces = sync_face_window(dataset.native_frames(name, range(r, r + 5)), dataset.boxes(name)[r:r + 5])
            c = sync_window_index(r)
            shifted = [c + s for s in (-shift, shift) if 0 <= c + s < n]
            if not shifted:
                continue
            p = sync_probability(net, mels[[c] + shifted], faces[None].expand(1 + len(shifted), -1, -1, -1))
            wins, total = wins + int((p[0] > p[1:]).sum()), total + len(shifted)
    return {"preferred": wins / max(total, 1), "comparisons": total}
