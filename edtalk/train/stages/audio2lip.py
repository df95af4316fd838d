"""Stage 3 — audio-to-lip (docs/design.md §8.4): Audio2Lip learns α_m from 5-frame mel windows.

Item (:class:`edtalk.data.audio_datasets.Audio2LipItems`): 5 mel windows, targets α_m/α_p
(the motion cache of `edtalk extract-motion`), 5 target frames, their face boxes, an identity
frame.  Forward: α̂_m = Audio2Lip(mels); wa, F of the identity repeated ×5; z = wa + Q26[α̂_m |
α_p(gt)]; Î = dec(z, F) with the frozen lip-pose generator (`model.train_dec: true` also trains
dec, in the `audio2lip` optimiser).

Losses (weights `loss.*`, plain sum): mse MSE(α̂_m, α_m); temporal MSE of the frame-to-frame
differences (0.1); l1 + perceptual + adv on Î (adv 0 by default: a GAN term without a trained D is
official bug 9 — adv > 0 trains a discriminator); mouth_l1 = L1 of the 96² bilinear ROI crops
(grid_sample) of the face boxes of Î and I; sync = 5 × BCE(cos(a, v), 1) with the frozen, eval-mode
SyncNet expert (`model.syncnet`): v from the lower halves of Î's five crops, a from one window.
`loss.sync_convention`: ``wav2lip`` (default: crops (x+1)/2 in [0,1], the window of frame r+2)
or ``official`` (crops in [-1,1], the window of frame r — bug 8, for parity only).

Audio encoder: with Wav2Lip generator weights (`model.wav2lip_path`, `module.audio_encoder.<i>.*`)
it is loaded and frozen with its BatchNorms held in eval mode (bug 10) — only `mapping` trains;
without them the whole Audio2Lip trains.  Export: `export/Audio2Lip.pt` ({'audio2lip','args'},
what `edtalk generate --audio2lip-checkpoint` and `Audio2Lip.from_official` load) and
`export/model/` (safetensors).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from ...checkpoints import load_state_dict_strict, safe_torch_load, strip_prefix
from ...config import Audio2LipConfig, DiscriminatorConfig
from ...data.audio_datasets import SYNC_FACE_SIZE, SYNC_FRAMES, sync_window_index
from ...errors import EDTalkError
from ...networks.audio2lip import Audio2Lip
from ...networks.discriminator import Discriminator
from ...networks.syncnet import load_syncnet
from ..losses import PyramidPerceptualLoss, build_backbone
from ..motion import load_generator
from ..stage import register_stage
from ..trainer import atomic_torch_save, import_object
from .common import GENERATOR_DEFAULTS, GeneratorStage, official_args
from .stage2 import resolve_stage1_init
from .syncnet import sync_probability

__all__ = ["Audio2LipStage", "roi_crop", "sync_faces", "wav2lip_audio_encoder", "official_audio2lip_checkpoint"]

AUDIO2LIP_DEFAULTS = OmegaConf.to_container(OmegaConf.merge(
    OmegaConf.create(GENERATOR_DEFAULTS),
    {
        "model": {
            "generator": None,        # lip-pose (or full) EDTalk: .pt, saved folder or a stage run folder
            "audio_channels": [32, 64, 128, 256, 512],  # Audio2Lip widths (official)
            "wav2lip_path": None,     # Wav2Lip generator checkpoint: load + freeze the audio encoder
            "syncnet": None,          # SyncNet expert: our folder (syncnet stage export) or lipsync_expert.pth
            "train_dec": False,       # official option: also train the generator's dec
        },
        "loss": {"mse": 1.0, "temporal": 0.1, "mouth_l1": 1.0, "sync": 5.0, "sync_convention": "wav2lip",
                 "adv": 0.0},
        "optim": {"audio2lip": {"lr": 0.0016, "betas": [0.9, 0.999]}},
    }))
SYNC_CONVENTIONS = ("wav2lip", "official")


# ----------------------------------------------------------------------------- helpers


def roi_crop(images: torch.Tensor, boxes: torch.Tensor, size: int = SYNC_FACE_SIZE) -> torch.Tensor:
    """Bilinear crops [N,C,size,size] of boxes [N,4] (x1,y1,x2,y2 in pixels of the [N,C,H,W] images)."""
    n, c, h, w = images.shape
    b = boxes.to(images.dtype)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (b[:, 2] - b[:, 0]) / w
    theta[:, 0, 2] = (b[:, 0] + b[:, 2]) / w - 1
    theta[:, 1, 1] = (b[:, 3] - b[:, 1]) / h
    theta[:, 1, 2] = (b[:, 1] + b[:, 3]) / h - 1
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sync_faces(crops: torch.Tensor, convention: str = "wav2lip") -> torch.Tensor:
    """Expert input [B,15,48,96] from the 96² crops [B,5,3,96,96] of generated frames in [-1,1]:
    lower halves, frame-major; (x+1)/2 clamped to [0,1] (wav2lip) or left in [-1,1] (official)."""
    lower = crops[:, :, :, SYNC_FACE_SIZE // 2:]
    if convention == "wav2lip":
        lower = ((lower + 1) / 2).clamp(0, 1)
    return lower.flatten(1, 2)


def wav2lip_audio_encoder(path_or_state_dict) -> Dict[str, torch.Tensor]:
    """The audio encoder of a Wav2Lip generator checkpoint ('state_dict' with
    `module.audio_encoder.<i>.*`) as `audio_encoder.<i>.*` entries of an Audio2Lip."""
    obj = path_or_state_dict if isinstance(path_or_state_dict, dict) else safe_torch_load(path_or_state_dict)
    sd = strip_prefix(obj.get("state_dict", obj))
    enc = {k: v for k, v in sd.items() if k.startswith("audio_encoder.")}
    if not enc:
        raise EDTalkError("not a Wav2Lip generator checkpoint (no module.audio_encoder.* entries)")
    return enc


def official_audio2lip_checkpoint(model: Audio2Lip, cfg) -> dict:
    """{'audio2lip', 'args'}: the official training file layout (§4.1)."""
    return {"audio2lip": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "args": official_args(cfg)}


# ----------------------------------------------------------------------------- stage


@register_stage("audio2lip")
class Audio2LipStage(GeneratorStage):
    default_config = AUDIO2LIP_DEFAULTS
    dataset_spec = "edtalk.data.audio_datasets:Audio2LipItems"

    # -- models ---------------------------------------------------------------------------------
    def build_models(self):
        m, loss = self.cfg.model, self.cfg.loss
        if str(loss.sync_convention) not in SYNC_CONVENTIONS:
            raise EDTalkError(f"loss.sync_convention must be one of {SYNC_CONVENTIONS}, got {loss.sync_convention!r}")
        if not m.generator:
            raise EDTalkError("audio-to-lip renders with a lip-pose generator: set model.generator "
                              "(EDTalk_lip_pose.pt, a saved model folder or a stage-1 run)")
        gen = load_generator(resolve_stage1_init("auto", str(m.generator))[1])
        gen.requires_grad_(False)
        if m.train_dec:
            gen.dec.requires_grad_(True)
            for p in gen.dead_parameters():
                p.requires_grad_(False)
        a2l = Audio2Lip(Audio2LipConfig(channels=tuple(m.audio_channels), mouth_dim=gen.config.mouth_dim))
        self.encoder_frozen = bool(m.wav2lip_path)
        if self.encoder_frozen:
            load_state_dict_strict(a2l.audio_encoder, strip_prefix(wav2lip_audio_encoder(str(m.wav2lip_path)),
                                                                     "audio_encoder."), "Wav2Lip audio encoder")
            a2l.audio_encoder.requires_grad_(False)
        models = {"audio2lip": a2l.train(), "gen": gen}
        if float(loss.sync) > 0:
            if not m.syncnet:
                raise EDTalkError("loss.sync > 0 needs a SyncNet expert: set model.syncnet (a syncnet stage export "
                                  "or Wav2Lip's lipsync_expert.pth), or loss.sync=0")
            models["syncnet"] = load_syncnet(str(m.syncnet)).requires_grad_(False)
        if float(loss.adv) > 0:
            models["dis"] = Discriminator(DiscriminatorConfig(size=gen.config.size, channels=dict(gen.config.channels)))
        p = loss.perceptual
        self.perceptual = None
        if float(p.weight) > 0 and p.backbone != "none":
            backbone = build_backbone(str(p.backbone), {"weights": p.weights}).to(self.device)
            self.perceptual = PyramidPerceptualLoss(backbone, tuple(p.scales), float(p.layer_weight)).to(self.device)
        return models

    def trainable(self):
        # train_dec: dec joins the audio2lip optimiser (one backward, one step for both)
        groups = {"audio2lip": ["audio2lip", "gen"] if self.cfg.model.train_dec else ["audio2lip"]}
        if "dis" in self.models:
            groups["dis"] = ["dis"]
        return groups

    def ema_models(self) -> List[str]:
        return ["audio2lip"]

    def hold_frozen_in_eval(self) -> None:
        """Frozen networks with BatchNorm (or any mode-dependent layer) stay in eval mode (bug 10);
        called every step because the trainer puts every model in train mode."""
        if self.encoder_frozen:
            self.models["audio2lip"].audio_encoder.eval()
        if "syncnet" in self.models:
            self.models["syncnet"].eval()
        if not self.cfg.model.train_dec:
            self.models["gen"].eval()

    # -- data -----------------------------------------------------------------------------------
    def build_dataset(self):
        d = self.cfg.data
        cls = import_object(str(d.dataset or self.dataset_spec))
        size = int(d.size) if d.size else int(self.models["gen"].config.size)
        try:
            extra = {"length": int(d.length)} if d.length else {}
            return cls(str(d.root), split=str(d.split), size=size, seed=int(self.cfg.seed), **extra)
        except FileNotFoundError as exc:
            raise EDTalkError(f"data.root {d.root}: {exc}") from None

    # -- step -----------------------------------------------------------------------------------
    def forward(self, a2l: Audio2Lip, batch) -> Dict[str, torch.Tensor]:
        """α̂_m [B,5,20] and Î [B·5,3,S,S] (frame-major within each item)."""
        gen = self.models["gen"]
        alpha = a2l(batch["mels"])
        wa, feats = gen.encode(batch["identity"])
        k = batch["mels"].shape[1]
        wa = wa.repeat_interleave(k, 0)
        feats = [f.repeat_interleave(k, 0) for f in feats]
        out = gen.render(wa, feats, mouth=alpha.flatten(0, 1), pose=batch["pose"].flatten(0, 1).to(alpha.dtype))
        return {"alpha": alpha, "output": out}

    def sync_loss(self, output: torch.Tensor, boxes: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """5 × BCE(cos(a, v), 1) — the weight loss.sync carries the 5 — on the spec's convention."""
        convention = str(self.cfg.loss.sync_convention)
        b = mels.shape[0]
        crops = roi_crop(output, boxes.flatten(0, 1)).view(b, SYNC_FRAMES, 3, SYNC_FACE_SIZE, SYNC_FACE_SIZE)
        window = sync_window_index(0) if convention == "wav2lip" else 0
        prob = sync_probability(self.models["syncnet"], mels[:, window], sync_faces(crops, convention),
                                check=convention == "wav2lip")
        return F.binary_cross_entropy(prob, torch.ones_like(prob))

    def losses(self, batch, a2l: Audio2Lip) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """(weighted loss terms, forward outputs) of one batch."""
        loss = self.cfg.loss
        f = self.forward(a2l, batch)
        alpha, target = f["alpha"].float(), batch["mouth"].float()
        frames, boxes = batch["frames"].flatten(0, 1), batch["boxes"].flatten(0, 1)
        terms = {"mse": float(loss.mse) * F.mse_loss(alpha, target),
                 "temporal": float(loss.temporal) * F.mse_loss(alpha.diff(dim=1), target.diff(dim=1))}
        terms.update(self.reconstruction_losses(f["output"], frames, "rec"))
        if float(loss.mouth_l1) > 0:
            terms["mouth_l1"] = float(loss.mouth_l1) * F.l1_loss(roi_crop(f["output"], boxes), roi_crop(frames, boxes))
        if float(loss.sync) > 0:
            terms["sync"] = float(loss.sync) * self.sync_loss(f["output"], batch["boxes"], batch["mels"])
        terms.update(self.adversarial_loss(f["output"]))
        return terms, f

    def train_step(self, batch, ctx):
        self.hold_frozen_in_eval()
        self.before_generator(ctx)
        with ctx.autocast():
            terms, f = self.losses(batch, self.models["audio2lip"])
        total = sum(terms.values())
        ctx.optimize("audio2lip", total)
        logs = {"total": total.detach(), **{k: v.detach() for k, v in terms.items()}}
        logs.update(self.discriminator_step(ctx, batch["frames"].flatten(0, 1), f["output"]))
        return logs

    def sample_images(self, batch, ctx):
        out = self.forward(ctx.ema_model("audio2lip"), batch)["output"]
        k = batch["mels"].shape[1]
        mid = SYNC_FRAMES // 2
        return {"identity": batch["identity"], "target": batch["frames"][:, mid], "output": out.view(-1, k, *out.shape[1:])[:, mid]}

    # -- export ---------------------------------------------------------------------------------
    def export(self, out_dir, ctx) -> List[str]:
        out_dir = Path(out_dir)
        a2l = ctx.ema_model("audio2lip")
        folder = a2l.save_pretrained(out_dir / "model")
        path = out_dir / "Audio2Lip.pt"
        atomic_torch_save(official_audio2lip_checkpoint(a2l, self.cfg), path)
        return [str(folder), str(path)]
