"""Training losses (docs/design.md §8 common settings, §8.2), each defined once.

- :func:`l1_loss` — mean |Î − I|.
- :class:`PyramidPerceptualLoss` — Σ_scales Σ_layers w·mean|φ(Î) − φ(I)| over a Gaussian
  anti-aliased image pyramid (scales 1, ½, ¼, ⅛; σ = (1/s − 1)/2, kernel 2·round(4σ)+1, zero pad
  ks//2, stride 1/s), for any :class:`PerceptualBackbone`.
- :class:`VGG19Backbone` — ImageNet VGG19 relu1_1..relu5_1 (`features` slices 0–1, 2–6, 7–11,
  12–20, 21–29), input clamped [-1,1] → [0,1] → ImageNet mean/std.  Inputs under 16² (64² frames
  at ⅛ scale) stop at the last layer whose max-pool still has a 2×2 window.  Weights come from a local
  file only (:func:`find_vgg19_weights`).
- :func:`g_nonsaturating_loss`, :func:`d_logistic_loss`, :func:`r1_penalty` — the StyleGAN2 GAN
  terms used with `edtalk.networks.discriminator.Discriminator`.
- :func:`feature_consistency_loss` — stage 1's exp(−cos(d, d')) summed over the batch (`mean`
  option).

Perceptual backbones are looked up by name (`loss.perceptual.backbone` in the training config):
``vgg19`` (ImageNet weights, user-supplied), ``synthtalk_factor_net`` (a small CNN trained on
SynthTalk factors, registered by `edtalk.train.factor_net`; replaces VGG where no VGG weights
exist) or ``none`` (no perceptual term; the run's config and log say so).  Register another with
:func:`register_backbone`.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EDTalkError
from ..nn.ops import scalar

__all__ = [
    "box_mask", "box_l1_loss", "grouped", "l1_per_sample", "box_l1_per_sample",
    "l1_loss", "PerceptualBackbone", "GaussianPyramid", "PyramidPerceptualLoss", "VGG19Backbone",
    "find_vgg19_weights", "register_backbone", "build_backbone", "available_backbones",
    "g_nonsaturating_loss", "d_logistic_loss", "r1_penalty", "feature_consistency_loss",
    "VGG19_WEIGHTS_ENV", "PYRAMID_SCALES",
]

PYRAMID_SCALES = (1.0, 0.5, 0.25, 0.125)
VGG19_WEIGHTS_ENV = "EDTALK_VGG19_WEIGHTS"
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # ends of relu1_1 .. relu5_1
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's cache name for the ImageNet weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).abs().mean()


def box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """[N,1,S,S] float mask, 1 inside each row's (x1, y1, x2, y2) box (x2/y2 exclusive)."""
    coords = torch.arange(size, device=boxes.device)
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    cols = (coords >= x1) & (coords < x2)  # [N,S]
    rows = (coords >= y1) & (coords < y2)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1).float()


def box_l1_loss(output: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """L1 over the pixels inside each sample's box (per-sample mean, then batch mean): a region
    term that weighs a small mouth as much as the whole face (empty boxes count 0)."""
    return box_l1_per_sample(output, target, box_mask(boxes, output.shape[-1])).mean()


def grouped(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`output` [G·N, ...] viewed as [G, N, ...] against `target` [N, ...]: several outputs
    compared with one target batch by broadcasting, without repeating the target."""
    return output.view(-1, *target.shape)


def sample_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dim after the first two of grouped values [G,N,...] → [G,N]: a sum times
    a cached 1/count (`mean` divides by a Python number, which costs a cast each way)."""
    count = x[0, 0].numel()
    return x.sum(dim=tuple(range(2, x.dim()))) * scalar(1.0 / count, x)


def l1_per_sample(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |Î − I| per sample [G·N] of outputs [G·N,C,H,W] against targets [N,C,H,W]."""
    return sample_mean((grouped(output, target) - target).abs()).flatten()


def box_l1_per_sample(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`box_l1_loss` per sample [G·N] for outputs [G·N,...] against targets [N,...] and the
    targets' box masks [N,1,H,W] (from :func:`box_mask`)."""
    mask = mask.to(output.dtype)
    inside = ((grouped(output, target) - target).abs() * mask).sum(dim=(2, 3, 4))
    area = (mask.sum(dim=(1, 2, 3)) * output.shape[1]).clamp(min=1)
    return (inside / area).flatten()


# ----------------------------------------------------------------------------- perceptual


@runtime_checkable
class PerceptualBackbone(Protocol):
    """Anything callable on images [B,3,H,W] in [-1,1] that returns a list of feature maps.

    The backbone does its own input normalisation and is frozen (no parameter requires grad);
    gradients still flow to the images.
    """

    def __call__(self, images: torch.Tensor) -> List[torch.Tensor]: ...


def gaussian_kernel_1d(scale: float) -> torch.Tensor:
    """The anti-aliasing kernel for downscaling by `scale`: σ = (1/s − 1)/2, size 2·round(4σ)+1."""
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(4 * sigma) + 1
    x = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (k / k.sum()).float()


class GaussianPyramid(nn.Module):
    """Images at scales 1, ½, ¼, ⅛ (Gaussian blur, zero padding ks//2, stride 1/s).

    The 2-D Gaussian k⊗k is applied as a vertical then a horizontal pass (each with its share of
    the stride and padding): the same filter with zero padding, a 29×29 kernel at ⅛ costing 2×29
    taps per output instead of 841.
    """

    def __init__(self, scales: Sequence[float] = PYRAMID_SCALES):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        for i, s in enumerate(self.scales):
            if s != 1.0:
                self.register_buffer(f"kernel{i}", gaussian_kernel_1d(s), persistent=False)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        out = []
        c = images.shape[1]
        for i, s in enumerate(self.scales):
            if s == 1.0:
                out.append(images)
                continue
            k = getattr(self, f"kernel{i}").to(images.dtype)
            step, pad = round(1 / s), k.shape[0] // 2
            x = F.conv2d(images, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(step, 1), padding=(pad, 0), groups=c)
            out.append(F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, step), padding=(0, pad), groups=c))
        return out


class PyramidPerceptualLoss(nn.Module):
    """Σ_scales Σ_layers weight·mean|φ(Î) − φ(I)|, target features without gradient.

    :meth:`target_features` and :meth:`per_sample` split the work so a step that compares several
    outputs with one target batch runs the backbone once on the targets and once on all outputs.
    """

    def __init__(self, backbone: PerceptualBackbone, scales: Sequence[float] = PYRAMID_SCALES,
                 layer_weight: float = 10.0):
        super().__init__()
        self.backbone = backbone
        self.pyramid = GaussianPyramid(scales)
        self.layer_weight = layer_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_sample(output, self.target_features(target)).mean()

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> List[List[torch.Tensor]]:
        """The backbone's features of every pyramid level of the targets [N,...]."""
        return [self.backbone(level) for level in self.pyramid(target)]

    def per_sample(self, output: torch.Tensor, target_feats: List[List[torch.Tensor]]) -> torch.Tensor:
        """The loss per sample [G·N] of outputs [G·N,...] (G outputs per target, grouped as in
        :func:`grouped`) against :meth:`target_features` of N targets."""
        layers = []
        for out_s, tgt_feats in zip(self.pyramid(output), target_feats):
            for fo, ft in zip(self.backbone(out_s), tgt_feats):
                layers.append(sample_mean((grouped(fo, ft) - ft).abs()))
        total = torch.stack(layers).sum(0).flatten()
        return total * scalar(self.layer_weight, total)


class VGG19Backbone(nn.Module):
    """ImageNet VGG19 relu1_1..relu5_1 features of images in [-1,1] (frozen, eval mode)."""

    def __init__(self, state_dict: Optional[Dict[str, torch.Tensor]] = None):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["E"])  # torchvision's vgg19().features, without the classifier
        if state_dict is not None:
            own = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
            try:
                features.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise EDTalkError(f"VGG19 weights do not match torchvision's vgg19: {str(exc).splitlines()[0]}") from None
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in VGG19_SLICES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: a frozen feature extractor

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = (images.clamp(-1, 1) + 1) / 2
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = []
        for block in self.slices:
            if min(x.shape[-2:]) < 2 and block is not self.slices[0]:
                break  # small images (64² at ⅛ scale): the next 2×2 max-pool has nothing left to pool
            x = block(x)
            feats.append(x)
        return feats


def find_vgg19_weights(path: Optional[str] = None) -> Path:
    """The ImageNet VGG19 weights: `path`, else $EDTALK_VGG19_WEIGHTS, else torchvision's cache."""
    candidates = [(path, "loss.perceptual.weights"), (os.environ.get(VGG19_WEIGHTS_ENV), f"${VGG19_WEIGHTS_ENV}")]
    for value, where in candidates:
        if value:
            if not Path(value).is_file():
                raise EDTalkError(f"VGG19 weights not found: {value} (from {where})")
            return Path(value)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if cached.is_file():
        return cached
    raise EDTalkError(
        "the perceptual loss needs ImageNet VGG19 weights and none were found: set loss.perceptual.weights=PATH "
        f"or ${VGG19_WEIGHTS_ENV} to torchvision's {VGG19_FILE}, put that file in {cached.parent}, or choose "
        "loss.perceptual.backbone=synthtalk_factor_net|none")


def _load_vgg19(options: dict) -> VGG19Backbone:
    path = find_vgg19_weights(options.get("weights"))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: one line
        raise EDTalkError(f"cannot read VGG19 weights {path}: {str(exc).strip().splitlines()[0]}") from None
    return VGG19Backbone(state)


BackboneLoader = Callable[[dict], nn.Module]
_BACKBONES: Dict[str, BackboneLoader] = {"vgg19": _load_vgg19}
# Registered by modules imported on first use (the factor net lives with its training stage).
_BACKBONE_MODULES = {"synthtalk_factor_net": "edtalk.train.factor_net"}


def register_backbone(name: str, loader: BackboneLoader) -> None:
    """Make `loss.perceptual.backbone: <name>` build a backbone with `loader(options)`.

    `options` is the `loss.perceptual` config section as a dict (e.g. its `weights` path).
    """
    _BACKBONES[name] = loader


def available_backbones() -> List[str]:
    return sorted(set(_BACKBONES) | set(_BACKBONE_MODULES) | {"none"})


def build_backbone(name: str, options: Optional[dict] = None) -> Optional[nn.Module]:
    """The frozen perceptual backbone named `name`, or None for 'none'."""
    options = dict(options or {})
    if name == "none":
        return None
    if name not in _BACKBONES and name in _BACKBONE_MODULES:
        try:
            importlib.import_module(_BACKBONE_MODULES[name])
        except ModuleNotFoundError as exc:
            raise EDTalkError(f"perceptual backbone {name!r} is not available ({exc})") from None
    if name not in _BACKBONES:
        raise EDTalkError(f"unknown perceptual backbone {name!r} (available: {', '.join(available_backbones())})")
    backbone = _BACKBONES[name](options)
    backbone.requires_grad_(False)
    return backbone.eval()


# ----------------------------------------------------------------------------- GAN


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator: mean softplus(−D(fake))."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator: mean softplus(−D(real)) + mean softplus(D(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1: mean over the batch of ‖∇_x D(x)‖² at real images (x must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------- stage 1


def feature_consistency_loss(a: torch.Tensor, b: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """exp(−cos(a_i, b_i)) over the batch (cos eps 1e-8; gradients on both sides).

    `reduction='sum'` is the spec's batch sum (§8.2); 'mean' divides by the batch size.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    terms = torch.exp(-F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-8))
    return terms.sum() if reduction == "sum" else terms.mean()
