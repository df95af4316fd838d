"""SynthTalk factor network: a small CNN that reads SynthTalk's known factors off a frame.

Its use is the perceptual term of training on machines without ImageNet VGG19 weights (issue 8):
:meth:`FactorNet.features` gives five feature maps at several depths, like VGG's relu1_1…relu5_1
(docs/design.md §8 "VGG pyramid"), from a network whose job was to see exactly what a talking-head model
must get right.

What it regresses (per frame, from one frame in [-1,1]):

- ``mouth`` [3], ``pose`` [6], ``expression`` [6], ``blink`` [1]: the per-frame factors of
  :mod:`edtalk.data.synthtalk`, so deep features respond to mouth opening, eyes and pose;
- ``identity`` [35]: the visible attributes of the speaker (face shape, skin / hair / iris / lip /
  shirt / background colours, hair style one-hot; the voice is left out).  Without this head a
  factor regressor may learn to ignore colour and texture (they do not help read the mouth), and
  a perceptual loss built on it would let a generator change skin, hair or background for free.
  Regressing them keeps colour detail in the early, full-resolution layers.

Architecture (64×64 input; any power-of-two ``size`` ≥ 16): five levels of 3×3 convolutions with
batch norm and leaky ReLU, the first at full resolution, each next one starting with a stride-2
conv (½ the resolution), average-pooled to 4×4, then a two-layer linear head.  Batch norm, not the
equalised-learning-rate blocks of :mod:`edtalk.nn.layers`: with those, the same budget (a
150-step A/B on 512 frames) left mouth and pose errors about twice as high, and this network
must train in minutes on a CPU.  As a backbone it runs in eval mode, where batch norm is a fixed
per-channel affine map (:class:`FactorBackbone` keeps it there).  Outputs are standardised
targets; the per-target mean/std of the training data are buffers, so :meth:`FactorNet.predict`
answers in factor units.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import _ConfigMixin
from ..errors import CheckpointError
from ..modeling import PretrainedModel

__all__ = ["FactorNetConfig", "FactorNet", "FactorBackbone", "IDENTITY_NAMES", "FACTOR_NET_ENV",
           "default_factor_net_dir", "load_factor_backbone"]

MODEL_TYPE = "synthtalk_factor_net"
FACTOR_NET_ENV = "EDTALK_FACTOR_NET"

# The visible part of edtalk.data.synthtalk_render.Identity.vector(): its first 34 entries without
# the style index (replaced by a one-hot), then nothing of the voice (f0, tract).
IDENTITY_NAMES = (
    "face_w", "face_h", "eye_gap", "eye_size", "nose_len", "mouth_w", "lip_thick", "brow_thick",
    "skin_r", "skin_g", "skin_b", "hair_r", "hair_g", "hair_b",
    "style_short", "style_long", "style_fringe", "style_bald", "hairline", "hair_tilt",
    "iris_r", "iris_g", "iris_b", "lips_r", "lips_g", "lips_b", "shirt_r", "shirt_g", "shirt_b",
    "bg_top_r", "bg_top_g", "bg_top_b", "bg_bottom_r", "bg_bottom_g", "bg_bottom_b",
)

DEFAULT_GROUPS = {"mouth": 3, "pose": 6, "expression": 6, "blink": 1, "identity": len(IDENTITY_NAMES)}


@dataclass
class FactorNetConfig(_ConfigMixin):
    """Architecture of :class:`FactorNet`.  `channels`: widths of the five feature levels
    (full, ½, ¼, ⅛, 1/16 resolution); `groups`: output size of every regressed factor group."""

    size: int = 64
    channels: tuple = (16, 32, 64, 96, 48)
    hidden: int = 128
    groups: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_GROUPS))
    model_type: str = MODEL_TYPE

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.groups = {str(k): int(v) for k, v in self.groups.items()}
        if len(self.channels) != 5:
            raise ValueError(f"FactorNet channels must list 5 widths, got {self.channels}")
        log_size = math.log2(self.size)
        if self.size < 16 or log_size != int(log_size):
            raise ValueError(f"size must be a power of two >= 16, got {self.size}")
        if not self.groups or min(self.groups.values()) < 1:
            raise ValueError(f"groups must name at least one factor group of size >= 1, got {self.groups}")

    @property
    def num_outputs(self) -> int:
        return sum(self.groups.values())

    @classmethod
    def tiny(cls) -> "FactorNetConfig":
        return cls(channels=(4, 8, 8, 8, 8), hidden=16)


class FactorNet(nn.Module, PretrainedModel):
    """Frame [B,3,S,S] in [-1,1] → standardised factors [B, num_outputs]; see the module doc."""

    model_type, label = MODEL_TYPE, "factor network"
    config_classes = {"config": FactorNetConfig}
    default_names = ("synthtalk_factor_net",)  # a factor_net run's export/synthtalk_factor_net

    def __init__(self, config: Optional[FactorNetConfig] = None):
        super().__init__()
        self.config = config = config or FactorNetConfig()
        c = config.channels
        self.levels = nn.ModuleList([
            _conv_bn(3, c[0], stride=1),
            nn.Sequential(_conv_bn(c[0], c[1], stride=2), _conv_bn(c[1], c[1], stride=1)),
            nn.Sequential(_conv_bn(c[1], c[2], stride=2), _conv_bn(c[2], c[2], stride=1)),
            nn.Sequential(_conv_bn(c[2], c[3], stride=2), _conv_bn(c[3], c[3], stride=1)),
            _conv_bn(c[3], c[4], stride=2),
        ])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c[4] * 16, config.hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(config.hidden, config.num_outputs))
        self.register_buffer("target_mean", torch.zeros(config.num_outputs))
        self.register_buffer("target_std", torch.ones(config.num_outputs))

    # ----------------------------------------------------------------------------- forward

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The perceptual backbone: five activations, full resolution first (like VGG relu1_1…5_1).
        Any input size works (stride-2 convs with padding 1 take a 1×1 map to 1×1)."""
        x = images.clamp(-1.0, 1.0)
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised predictions [B, num_outputs] (groups in `config.groups` order)."""
        return self.head(F.adaptive_avg_pool2d(self.features(images)[-1], 4))

    def split(self, outputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """[B, num_outputs] → {group: [B, d]} in `config.groups` order."""
        return dict(zip(self.config.groups, outputs.split(list(self.config.groups.values()), dim=1)))

    def predict(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{group: [B, d]} in factor units (mouth open in [0,1], pose in radians, ...)."""
        return self.split(self(images) * self.target_std + self.target_mean)


def _conv_bn(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))


class FactorBackbone(nn.Module):
    """A frozen FactorNet as a perceptual backbone: images in [-1,1] → list of feature maps.

    Parameters never require grad and the module stays in eval mode (a trainer calling
    ``.train()`` on its loss modules changes nothing); gradients still flow to the images.
    """

    def __init__(self, net: FactorNet, with_head: bool = False):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.with_head = with_head
        self.fold_batch_norm()

    def train(self, mode: bool = True) -> "FactorBackbone":
        return super().train(False)

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold every eval-mode batch norm into its convolution (w·γ/σ, β − μ·γ/σ): the same map
        with one op per layer instead of a batch norm's many, forward and backward.  Call again
        after changing `net`'s weights."""
        self.folded = []  # per level: (buffer index, stride, padding, slope) of each conv block
        k = 0
        for level in self.net.levels:
            blocks = [level] if isinstance(level[0], nn.Conv2d) else list(level)  # (conv, bn, lrelu) each
            layers = []
            for conv, bn, act in blocks:
                gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                self.register_buffer(f"fold_w{k}", conv.weight * gain[:, None, None, None], persistent=False)
                self.register_buffer(f"fold_b{k}", bn.bias - bn.running_mean * gain, persistent=False)
                layers.append((k, conv.stride, conv.padding, act.negative_slope))
                k += 1
            self.folded.append(layers)

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """:meth:`FactorNet.features` with the folded layers."""
        x = images.clamp(-1.0, 1.0)
        feats = []
        for layers in self.folded:
            for k, stride, padding, slope in layers:
                w, b = getattr(self, f"fold_w{k}"), getattr(self, f"fold_b{k}")
                if w.dtype != x.dtype:  # autocast
                    w, b = w.to(x.dtype), b.to(x.dtype)
                x = F.leaky_relu(F.conv2d(x, w, b, stride, padding), slope)
            feats.append(x)
        return feats

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The five feature maps; `with_head` appends the standardised factor predictions [B,K] as a
        sixth "layer", so the loss also compares what the net reads (mouth opening, yaw, ...)."""
        feats = self.features(images)
        if self.with_head:
            feats = feats + [self.net.head(F.adaptive_avg_pool2d(feats[-1], 4))]
        return feats


def default_factor_net_dir() -> Path:
    """$EDTALK_FACTOR_NET, else the shipped ``checkpoints/synthtalk_factor_net`` of the repository."""
    env = os.environ.get(FACTOR_NET_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "checkpoints" / "synthtalk_factor_net"


def load_factor_backbone(path=None, device=None, with_head: bool = False) -> FactorBackbone:
    """The trained SynthTalk factor network as a frozen perceptual backbone (see FactorBackbone).

    `path`: a folder from :meth:`FactorNet.save_pretrained`; default :func:`default_factor_net_dir`.
    """
    directory = Path(path) if path is not None else default_factor_net_dir()
    if not directory.is_dir():
        raise CheckpointError(f"factor network not found at {directory} (set ${FACTOR_NET_ENV} to its folder, "
                              "or train one: edtalk train --config configs/train/factor_net.yaml data.root=SYNTHTALK_TREE)")
    return FactorBackbone(FactorNet.from_pretrained(directory, device=device), with_head=with_head)
