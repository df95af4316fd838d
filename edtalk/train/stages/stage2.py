"""Stage 2 — expression decoupling by self-reconstruction (docs/design.md §8.3).

The lip-pose model of stage 1 cannot express emotion; a new expression branch learns the
complement.  Init: the stage-1 generator (a stage-1 run, its export, `EDTalk_lip_pose.pt` or our
saved lip-pose folder) plus

- W10 ~ N(0,1) appended *after* the 26 mouth/pose columns: Householder QR's first 26 columns
  depend only on W26, so the mouth and pose bases stay bit-identical (§2.3);
- a new `exp_fc` and six EEMs; `model.identity_start` (default on) zeroes `exp_fc.2` and sets
  every norm2 to γ-weight 0, γ-bias −1, β 0, so α_e = 0, d_e = 0 and EEM(x) = x: step 0 renders
  exactly what the lip-pose model renders.

Item (MEAD-style tree): target = a random frame of speaker s with an emotion drawn uniformly
(neutral included); source = a random frame of a neutral clip of s.  Forward: α_m, α_p, α_e from
the target, z = wa(source) + Q36·α, Î = G(z, F(source), d_e).  Loss: L1 + pyramid perceptual +
GAN (weights 1), D on (target, Î); optional decorrelation ‖AᵀB‖²_F/512 of the batch's centred
d_e (A) and d_m (B) (`loss.decorrelation`, off by default).

Phase A (default) trains exp_fc, W10 (through the 36-column QR) and EEM conv2/norm2; E, dec,
fc, lip_fc, pose_fc, W26 and EEM conv1/norm1 are frozen.  Phase B (`model.phase: B`, from a
phase-A export) also unfreezes dec (E, fc, heads and W26 stay frozen) and uses the `gen_b`
optimiser (lr ×0.1 of the phase-A lr by default).  The export is a full EDTalk model (our
folder + an official-format `.pt`) that `edtalk generate --checkpoint` takes.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from omegaconf import OmegaConf

from ...checkpoints import find_model
from ...config import EDTalkConfig
from ...data import layout
from ...data.datasets import Stage2Items
from ...errors import EDTalkError, InputError
from ...model import EDTalk
from ...networks.motion import latent_offset
from ..stage import register_stage
from .common import GENERATOR_DEFAULTS, GeneratorStage, full_generator_config

__all__ = ["Stage2", "Stage2Items", "add_expression_branch", "identity_start", "stage2_trainable",
           "resolve_stage1_init"]

_G = GENERATOR_DEFAULTS["optim"]["gen"]
STAGE2_DEFAULTS = OmegaConf.to_container(OmegaConf.merge(
    OmegaConf.create(GENERATOR_DEFAULTS),
    {
        "model": {
            "init": "auto",          # auto | official | pretrained | scratch (auto: from init_path)
            "exp_dim": 10,
            "adain_hidden": 128,     # EEM ADAIN hidden width (official 128)
            "identity_start": True,  # step 0 renders exactly like the stage-1 model
            "phase": "A",            # A: expression branch only | B: + dec (optimiser gen_b)
        },
        "loss": {"decorrelation": 0.0},
        "optim": {"gen_b": {"lr": _G["lr"] * 0.1, "betas": list(_G["betas"])}},
    }))


# ----------------------------------------------------------------------------- model surgery


def identity_start(model: EDTalk) -> None:
    """α_e ≡ 0 and EEM ≡ identity: zero exp_fc.2; norm2 γ-weight 0, γ-bias −1, β 0 (docs/design.md §8.3)."""
    with torch.no_grad():
        last = model.exp_fc[-1]
        last.weight.zero_()
        last.bias.zero_()
        for eem in model.dec.fineadainresblock:
            eem.norm2.mlp_gamma.weight.zero_()
            eem.norm2.mlp_gamma.bias.fill_(-1.0)
            eem.norm2.mlp_beta.weight.zero_()
            eem.norm2.mlp_beta.bias.zero_()


def add_expression_branch(lip_pose: EDTalk, exp_dim: int = 10, adain_hidden: int = 128, seed: int = 0,
                          start_as_identity: bool = True) -> EDTalk:
    """The full EDTalk model holding `lip_pose`'s weights plus a new W10 ~ N(0,1), exp_fc, EEM×levels."""
    if lip_pose.has_expression:
        raise EDTalkError("the model already has an expression branch")
    c = lip_pose.config
    config = EDTalkConfig(size=c.size, latent_dim=c.latent_dim, channels=dict(c.channels), mouth_dim=c.mouth_dim,
                          pose_dim=c.pose_dim, exp_dim=int(exp_dim), shared_mlp_depth=c.shared_mlp_depth,
                          adain_hidden=int(adain_hidden))
    torch.manual_seed(seed)
    model = EDTalk(config).to(device=lip_pose.device, dtype=lip_pose.dtype)
    missing, unexpected = model.load_state_dict(lip_pose.state_dict(), strict=False)
    new = ("dec.fineadainresblock.", "direction_exp.", "exp_fc.")
    if unexpected or any(not k.startswith(new) for k in missing):
        raise EDTalkError(f"lip-pose weights do not fit the full model (missing {missing[:2]}, unexpected {unexpected[:2]})")
    if start_as_identity:
        identity_start(model)
    return model.train(lip_pose.training)


def stage2_trainable(model: EDTalk, phase: str = "A") -> None:
    """requires_grad for a phase: A = exp_fc, W10, EEM conv2/norm2; B = A + the rest of dec."""
    if phase not in ("A", "B"):
        raise EDTalkError(f"model.phase must be A or B, got {phase!r}")
    model.requires_grad_(False)
    model.exp_fc.requires_grad_(True)
    model.direction_exp.requires_grad_(True)
    if phase == "B":
        model.dec.requires_grad_(True)
    for eem in model.dec.fineadainresblock:
        eem.conv2.requires_grad_(True)
        eem.norm2.requires_grad_(True)
    for p in model.dead_parameters():  # the EEM branch the released forward overwrites (§2.6)
        p.requires_grad_(False)


def resolve_stage1_init(kind: str, path: Optional[str]) -> Tuple[str, Optional[str]]:
    """(init kind, path) for `model.init`; `auto` reads the path: a run folder or its export/
    (the newest official-format `.pt`, which also holds the stage-1 D), a `.pt` file, or a saved
    model folder (:func:`edtalk.checkpoints.find_model`)."""
    if kind != "auto":
        return kind, path
    if not path:
        raise EDTalkError("stage 2 starts from a stage-1 model: set model.init_path (a stage-1 run, its export, "
                          "EDTalk_lip_pose.pt or a saved model folder)")
    found = find_model(path, EDTalk.model_type, prefer_official=True)
    if found is None:
        raise EDTalkError(f"model.init_path {path}: no stage-1 model found (expected a .pt, a saved model folder "
                          "or a run folder with export/)")
    return ("official" if found.official else "pretrained"), str(found.path)


# ----------------------------------------------------------------------------- data


# ----------------------------------------------------------------------------- stage


def decorrelation_loss(d_e: torch.Tensor, d_m: torch.Tensor) -> torch.Tensor:
    """‖AᵀB‖²_F / latent of the batch's centred expression (A) and mouth (B) latents [B,latent]."""
    a = d_e.float() - d_e.float().mean(0, keepdim=True)
    b = d_m.float() - d_m.float().mean(0, keepdim=True)
    return (a.t() @ b).pow(2).sum() / a.shape[1]


@register_stage("stage2")
class Stage2(GeneratorStage):
    default_config = STAGE2_DEFAULTS
    dataset_spec = "edtalk.data.datasets:Stage2Items"

    @property
    def gen_optimizer(self) -> str:
        return "gen_b" if str(self.cfg.model.phase) == "B" else "gen"

    def generator_config(self) -> EDTalkConfig:
        return full_generator_config(self.cfg.model)

    def build_models(self):
        m = self.cfg.model
        m.init, m.init_path = resolve_stage1_init(str(m.init), m.init_path)
        models = super().build_models()
        gen = models["gen"]
        if not gen.has_expression:
            gen = add_expression_branch(gen, int(m.exp_dim), int(m.adain_hidden), int(self.cfg.seed),
                                        bool(m.identity_start))
        stage2_trainable(gen, str(m.phase))
        models["gen"] = gen.train()
        return models

    def trainable(self):
        return {name: [model] for name, model in ((self.gen_optimizer, "gen"), ("dis", "dis")) if model in self.models}

    def forward(self, gen: EDTalk, source: torch.Tensor, target: torch.Tensor):
        """(Î, d_e, d_m): the frozen encoder/heads run without autograd; exp_fc and the
        36-column QR (W10) and the decoder's EEMs carry gradients."""
        with torch.no_grad():
            wa, feats = gen.encode(source)
            shared = gen.fc(gen.encode_latent(target))
            mouth, pose = gen.lip_fc(shared), gen.pose_fc(shared)
        exp = gen.exp_fc(shared)
        output = gen.render(wa, feats, mouth, pose, exp)
        q = gen.split_bases()
        return output, latent_offset(exp, q["exp"]), latent_offset(mouth, q["mouth"])

    def train_step(self, batch, ctx):
        gen, loss = self.models["gen"], self.cfg.loss
        source, target = batch["source"], batch["target"]
        self.before_generator(ctx)
        with ctx.autocast():
            output, d_e, d_m = self.forward(gen, source, target)
            terms = self.reconstruction_losses(output, target, "rec")
            terms.update(self.adversarial_loss(output))
            if float(loss.decorrelation) > 0:
                terms["decorr"] = float(loss.decorrelation) * decorrelation_loss(d_e, d_m)
        total = sum(terms.values())
        ctx.optimize(self.gen_optimizer, total)
        logs = {"g_total": total.detach(), **{k: v.detach() for k, v in terms.items()}}
        logs.update(self.discriminator_step(ctx, target, output))
        return logs

    def sample_images(self, batch, ctx):
        gen = ctx.ema_model("gen")
        source, target = batch["source"], batch["target"]
        with torch.no_grad():
            latent, feats = gen.encode(source)
            alpha = gen.motion_weights(target)
            lip_pose_only = gen.render(latent, feats, alpha["mouth"], alpha["pose"])
        return {"source": source, "target": target, "no_expression": lip_pose_only,
                "output": self.forward(gen, source, target)[0]}

