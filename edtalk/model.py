"""The EDTalk generator: encoder, motion banks, navigation heads and flow-field synthesis.

One class covers the full model (`EDTalk.pt`: mouth + pose + expression with EEM) and the
lip-pose model (`EDTalk_lip_pose.pt`: `exp_dim = 0`), through its config (docs/design.md §2.7).

    z  = wa_source + Q_m α_m + Q_p α_p + Q_e α_e
    Î  = G(z, F_source, d_e = Q_e α_e)

Loading and saving come from the model core (:mod:`edtalk.modeling`): `EDTalk.from_pretrained(path)`
reads a saved folder, `EDTalk.pt` / `EDTalk_lip_pose.pt`, a checkpoint folder or a training run;
`EDTalk.from_official(path or state dict)` the released format (:mod:`edtalk.convert.official`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .config import EDTalkConfig, GeneratorVariant
from .convert import official
from .modeling import PretrainedModel
from .networks.encoder import Encoder
from .networks.motion import affine_mlp, latent_offset, orthonormal_bases
from .networks.synthesis import SourceFeatures, Synthesis


class Direction(nn.Module):
    """A motion bank's raw matrix W [latent, n]; its orthonormal bases come from QR (§2.3)."""

    def __init__(self, latent_dim: int, num: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(latent_dim, num))


class EDTalk(nn.Module, PretrainedModel, GeneratorVariant):
    model_type, label = "edtalk", "EDTalk generator"
    config_classes = {"config": EDTalkConfig}
    default_names = ("EDTalk.pt", "EDTalk")  # in a checkpoint folder: the released file or a saved folder
    official_reader = staticmethod(official.read_generator)

    def __init__(self, config: Optional[EDTalkConfig] = None):
        super().__init__()
        self.config = cfg = config or EDTalkConfig()
        d = cfg.latent_dim
        # Registration order follows the official state dict.
        self.enc = Encoder(cfg.size, d, cfg.channels)
        self.dec = Synthesis(cfg.size, d, cfg.channels, expression=cfg.has_expression, adain_hidden=cfg.adain_hidden)
        self.direction_lipnonlip = Direction(d, cfg.mouth_dim + cfg.pose_dim)
        if cfg.has_expression:
            self.direction_exp = Direction(d, cfg.exp_dim)
        self.fc = affine_mlp(d, d, d, cfg.shared_mlp_depth)
        self.lip_fc = affine_mlp(d, d, cfg.mouth_dim, 3)
        self.pose_fc = affine_mlp(d, d, cfg.pose_dim, 3)
        if cfg.has_expression:
            self.exp_fc = affine_mlp(d, d, cfg.exp_dim, 3)
        self._bases_cache: Optional[Tuple[tuple, torch.Tensor]] = None

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.direction_lipnonlip.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.direction_lipnonlip.weight.dtype

    # ------------------------------------------------------------------ bases
    def bank_weights(self) -> torch.Tensor:
        """[W26 | W10]: mouth, pose, then expression columns."""
        w = self.direction_lipnonlip.weight
        if self.has_expression:
            w = torch.cat([w, self.direction_exp.weight], dim=1)
        return w

    def bases(self) -> torch.Tensor:
        """Orthonormal bases Q [latent, 36] (lip-pose: [latent, 26]), float32.

        Recomputed whenever gradients may flow into the banks; cached otherwise (keyed on the
        weights' identity and version, so in-place updates invalidate it).
        """
        weights = [self.direction_lipnonlip.weight] + ([self.direction_exp.weight] if self.has_expression else [])
        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return orthonormal_bases(self.bank_weights())
        key = tuple((w.data_ptr(), w._version, w.device, w.dtype) for w in weights)
        if self._bases_cache is None or self._bases_cache[0] != key:
            with torch.no_grad():
                self._bases_cache = (key, orthonormal_bases(self.bank_weights()))
        return self._bases_cache[1]

    def split_bases(self, bases: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        q = self.bases() if bases is None else bases
        m, p = self.config.mouth_dim, self.config.pose_dim
        parts = {"mouth": q[:, :m], "pose": q[:, m:m + p]}
        if self.has_expression:
            parts["exp"] = q[:, m + p:]
        return parts

    # ------------------------------------------------------------------ encoding
    def encode(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """images [B,3,H,W] in [-1,1] → (latent wa [B,latent], feats: coarsest (8×8) first)."""
        self._check_images(images)
        return self.enc(images)

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """Only the latent wa [B,latent] (drivers need no feature maps)."""
        self._check_images(images)
        return self.enc.latent(images)

    def motion_weights(self, images: Optional[torch.Tensor] = None, latent: Optional[torch.Tensor] = None,
                       parts: Sequence[str] = ("mouth", "pose", "exp")) -> Dict[str, torch.Tensor]:
        """Navigation weights α for driver frames (or for precomputed latents).

        Returns {'mouth' [B,20], 'pose' [B,6], 'exp' [B,10] (full model only)}; `parts` limits
        which heads run.
        """
        if latent is None:
            latent = self.encode_latent(images)
        shared = self.fc(latent)
        heads = {"mouth": self.lip_fc, "pose": self.pose_fc}
        if self.has_expression:
            heads["exp"] = self.exp_fc
        return {name: heads[name](shared) for name in parts if name in heads}

    def prepare_source(self, feats: Sequence[torch.Tensor]) -> SourceFeatures:
        """Cache the per-clip work on the source features (EEM conv + norm); pass to `render`."""
        return self.dec.prepare_source(feats)

    # ------------------------------------------------------------------ rendering
    def motion_latent(self, latent, mouth=None, pose=None, exp=None):
        """z = wa + d_m + d_p + d_e and d_e; broadcasting a single source over B frames."""
        if exp is not None and not self.has_expression:
            raise ValueError("the lip-pose model has no expression space; pass exp=None")
        q = self.split_bases()
        offsets = [latent_offset(a, q[name]) for name, a in (("mouth", mouth), ("pose", pose), ("exp", exp))
                   if a is not None]
        d_exp = latent_offset(exp, q["exp"]) if exp is not None else None
        # Sum in at least float32 (the official lip-pose model casts to float32 too).
        z = latent.to(torch.promote_types(latent.dtype, torch.float32))
        for d in offsets:
            z = z + d.to(device=z.device, dtype=z.dtype)
        z = z.to(latent.dtype)
        return z, (d_exp.to(device=latent.device, dtype=latent.dtype) if d_exp is not None else None)

    def render(self, latent: torch.Tensor, feats: Sequence[torch.Tensor], mouth: Optional[torch.Tensor] = None,
               pose: Optional[torch.Tensor] = None, exp: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Frames [B,3,H,W] (official, unclamped range) from the source and per-frame weights.

        A batch-1 latent/feats (one source) broadcasts over the B frames of the weights.
        """
        z, d_exp = self.motion_latent(latent, mouth, pose, exp)
        batch = max(t.shape[0] for t in (z, mouth, pose, exp) if t is not None)
        z = z.expand(batch, -1) if z.shape[0] != batch else z
        # A batch-1 expression stays batch 1: the decoder then enhances the source features once.
        return self.dec(z, feats, d_exp)

    def forward(self, source: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
        """Reconstruction: every motion factor from `driver`, appearance from `source`."""
        latent, feats = self.encode(source)
        weights = self.motion_weights(driver)
        return self.render(latent, feats, weights["mouth"], weights["pose"], weights.get("exp"))

    def _check_images(self, images):
        size = self.config.size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(f"expected images [B,3,{size},{size}], got {tuple(images.shape)}")

    # ------------------------------------------------------------------ training helpers
    def dead_parameters(self) -> List[nn.Parameter]:
        """EEM first-branch parameters that receive no gradient (freeze them; docs/design.md §2.6)."""
        if not self.dec.has_eem:
            return []
        return [p for eem in self.dec.fineadainresblock for p in eem.dead_parameters()]


def config_from_state_dict(sd: Dict[str, torch.Tensor]) -> EDTalkConfig:
    """The architecture (size, channels, dims) of an official-format state dict."""
    return EDTalkConfig(**official.generator_config(sd))
