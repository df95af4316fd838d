"""syncnet_v2, the network behind LSE-C / LSE-D (joonson/syncnet_python, ``SyncNetModel.S``).

Built here so that the released ``syncnet_v2.model`` state dict loads as it is (its parameter
names are kept: ``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``).  Audio: MFCC windows
[N,1,13,20] → 1024-d; lips: five 224² BGR 0–255 frames [N,3,5,224,224] → 1024-d.  A TorchScript
or torch.export file with ``forward(mfcc, video) → (audio_emb, video_emb)`` loads too.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...checkpoints import plain_torch_load
from .registry import MetricUnavailable, load_user_network

# (out channels, kernel, stride, padding, max-pool after (kernel, stride, padding) or None)
AUDIO_CONVS = ((64, 3, 1, 1, ((1, 1), (1, 1), 0)), (192, 3, 1, 1, ((3, 3), (1, 2), 0)), (384, 3, 1, 1, None),
               (256, 3, 1, 1, None), (256, 3, 1, 1, ((3, 3), (2, 2), 0)), (512, (5, 4), 1, 0, None))
LIP_CONVS = ((96, (5, 7, 7), (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2), 0)),
             (256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
             (256, (1, 3, 3), 1, (0, 1, 1), None), (256, (1, 3, 3), 1, (0, 1, 1), None),
             (256, (1, 3, 3), 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2), 0)), (512, (1, 6, 6), 1, 0, None))


def _stack(specs, conv, norm, pool, in_channels: int) -> nn.Sequential:
    layers = []
    for out, kernel, stride, padding, after in specs:
        layers += [conv(in_channels, out, kernel, stride, padding), norm(out), nn.ReLU()]
        if after is not None:
            layers.append(pool(*after))
        in_channels = out
    return nn.Sequential(*layers)


def _head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNetV2(nn.Module):
    def __init__(self, width: int = 1024):
        super().__init__()
        self.netcnnaud = _stack(AUDIO_CONVS, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, 1)
        self.netfcaud = _head(width)
        self.netcnnlip = _stack(LIP_CONVS, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, 3)
        self.netfclip = _head(width)

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, video: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(video).flatten(1))

    def forward(self, mfcc: torch.Tensor, video: torch.Tensor):
        return self.forward_aud(mfcc), self.forward_lip(video)


def load_syncnet_v2(path, device="cpu"):
    """(network, description): syncnet_python's ``syncnet_v2.model`` state dict, or a TorchScript /
    torch.export file with the same forward."""
    path = Path(path)
    state = plain_torch_load(path)  # None: a TorchScript archive or .pt2 program, tried next
    if isinstance(state, dict) and any(str(k).startswith("netcnnaud.") for k in state):
        width = state["netfcaud.3.weight"].shape[0] if "netfcaud.3.weight" in state else 1024
        net = SyncNetV2(width)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise MetricUnavailable(f"{path} does not fit syncnet_v2: {str(exc).splitlines()[0]}") from None
        return net.to(device).eval().requires_grad_(False), "syncnet_v2 (syncnet_python weights)"
    return load_user_network(path, "syncnet_v2 network", device), "syncnet_v2 (user TorchScript/.pt2 export)"
