"""Stage 1 — mouth–pose decoupling by cross-reconstruction (docs/design.md §8.2).

Per item: identity frames a_id, b_id; targets a, b; mouth-swap crosses a_b (a's face with b's
mouth) and b_a (b's face with a's mouth).  With d_m = Q_m α_m and d_p = Q_p α_p of a frame:

- self a:  z = wa(a_id) + d_m(a) + d_p(a), rendered with F(a_id), target a (likewise b);
- cross a: z = wa(a_id) + d_m(b_a) + d_p(a_b) — a's mouth from b_a, a's pose from a_b — target a;
- cross b: z = wa(b_id) + d_m(a_b) + d_p(b_a), target b.

G loss (weights from `loss.*`, plain sum): rec (L1 + perceptual, self outputs), cross (same, cross
outputs), adv (GAN on all four outputs), fea_m = Σ_batch exp(−cos(d_m^cross, d_m^self)) for a and
b (summed over the global batch, whatever the process count), fea_p the same for pose
(`loss.fea_reduction: mean` divides by the batch).  Not in the spec: `loss.mouth` (default 0),
L1 inside the targets' lip boxes for self and cross outputs — at 64² the mouth is a few pixels
of a whole-frame L1; `loss.repair` (default 0), the same terms for a third output per target:
source a_b (a with b's mouth pasted in), motion of a, target a — everything but the mouth can be
copied from the source, so the whole loss is about rendering the mouth that d_m asks for;
`loss.fea_center` (default false): the fea terms on deviations from the batch's mean self latent
(true / batch), or from a running mean of the self latents over steps (running, momentum
`loss.fea_center_momentum`, all-reduced over ranks, checkpointed), from step
`loss.fea_center_from` on (default 0; a short A/B lost mouth-opening R² when centring from the
start, docs/training/stage1_ab.md); `loss.image_halves: sum` counts the image terms as the
official trainer does, a's plus b's (2x our mean over [a; b]).
D: real [a,b] vs fake [cross a, cross b].  All of G learns (E, dec, fc, heads, W26 through QR); `train.freeze:
[gen.enc, gen.dec]` freezes E/dec.
"""
from __future__ import annotations

from typing import Optional

import torch
from omegaconf import OmegaConf

from ...networks.motion import latent_offset
from ...nn.ops import scalar
from ...errors import EDTalkError
from ..losses import feature_consistency_loss
from ..stage import register_stage
from .common import GENERATOR_DEFAULTS, GeneratorStage

STAGE1_DEFAULTS = OmegaConf.to_container(OmegaConf.merge(
    OmegaConf.create(GENERATOR_DEFAULTS),
    {"loss": {"rec": 1.0, "cross": 1.0, "fea_m": 1.0, "fea_p": 1.0, "fea_reduction": "sum",
              "mouth": 0.0, "repair": 0.0, "fea_center": False, "fea_center_momentum": 0.99,
              "fea_center_from": 0,
              "image_halves": "mean"}}))

FEA_CENTER_MODES = {"false": None, "none": None, "true": "batch", "batch": "batch", "running": "running"}


@register_stage("stage1")
class Stage1(GeneratorStage):
    default_config = STAGE1_DEFAULTS
    dataset_spec = "edtalk.data.datasets:Stage1Items"

    def forward(self, gen, batch, repair: bool = False):
        """Self and cross outputs plus the mouth/pose latents they used; `repair` adds "repair":
        sources a_b, b_a (the targets with the other mouth pasted in) driven by a, b."""
        a_id, b_id = batch["a_id"], batch["b_id"]
        n = a_id.shape[0]
        sources = [a_id, b_id] + ([batch["a_b"], batch["b_a"]] if repair else [])
        wa, feats = gen.encode(torch.cat(sources))
        drivers = torch.cat([batch["a"], batch["b"], batch["a_b"], batch["b_a"]])
        alpha = gen.motion_weights(drivers, parts=("mouth", "pose"))
        q = gen.split_bases()  # one QR per step; gradients reach W26 through it
        d_m = latent_offset(alpha["mouth"], q["mouth"]).to(wa.dtype).split(n)
        d_p = latent_offset(alpha["pose"], q["pose"]).to(wa.dtype).split(n)
        (m_a, m_b, m_ab, m_ba), (p_a, p_b, p_ab, p_ba) = d_m, d_p
        wa = wa.split(2 * n)
        feats_id = [f[:2 * n] for f in feats]
        wa2 = torch.cat([wa[0], wa[0]])  # [a_id, b_id] for self, then again for cross
        z = wa2 + torch.cat([m_a, m_b, m_ba, m_ab]) + torch.cat([p_a, p_b, p_ab, p_ba])
        decoder_feats = [torch.cat([f, f]) for f in feats_id]
        if repair:  # z = wa(a_b) + d_m(a) + d_p(a): only the mouth differs from the source
            z = torch.cat([z, wa[1] + torch.cat([m_a, m_b]) + torch.cat([p_a, p_b])])
            decoder_feats = [torch.cat([d, f[2 * n:]]) for d, f in zip(decoder_feats, feats)]
        out = gen.dec(z, decoder_feats).split(2 * n)
        return {
            "self": out[0], "cross": out[1],  # each [a-part; b-part]
            **({"repair": out[2]} if repair else {}),
            "m_self": torch.cat([m_a, m_b]), "m_cross": torch.cat([m_ba, m_ab]),
            "p_self": torch.cat([p_a, p_b]), "p_cross": torch.cat([p_ab, p_ba]),
        }

    def train_step(self, batch, ctx):
        gen, loss = self.models["gen"], self.cfg.loss
        target = torch.cat([batch["a"], batch["b"]])
        boxes = torch.cat([batch["mouth_box_a"], batch["mouth_box_b"]])
        self.before_generator(ctx)
        with ctx.autocast():
            repair = float(loss.repair) > 0
            f = self.forward(gen, batch, repair=repair)
            # one pass over [self; cross; repair]; each part's prefix is also its loss-weight key
            halves = self.image_halves_factor()
            parts = [(prefix, halves * float(loss[prefix]), f[part]) for part, prefix in
                     [("self", "rec"), ("cross", "cross")] + ([("repair", "repair")] if repair else [])]
            total, terms = self.image_terms(parts, target, boxes, mouth=float(loss.mouth))
            adv = self.adversarial_loss(torch.cat([f["self"], f["cross"]]))
            terms.update(adv)
            for name in ("m", "p"):
                fea = self.consistency(f[f"{name}_cross"], f[f"{name}_self"], name, step=ctx.step)
                terms[f"fea_{name}"] = fea * scalar(float(loss[f"fea_{name}"]), fea)
            for extra in [*adv.values(), terms["fea_m"], terms["fea_p"]]:
                total = total + extra
        logs = self.generator_update(ctx, terms, total)
        logs.update(self.discriminator_step(ctx, target, f["cross"]))
        return logs

    def consistency(self, cross: torch.Tensor, own: torch.Tensor, name: str = "m",
                    step: Optional[int] = None) -> torch.Tensor:
        """The fea term for a then b (each half summed, or averaged with fea_reduction=mean).

        A sum is over the *global* batch: each rank's sum is scaled by the number of processes,
        because the trainer averages gradients over ranks (so any process count trains alike).
        With `loss.fea_center`, the latents are centred from step `loss.fea_center_from` on (None:
        always); a running mean is kept from the first step, so it is warm when centring starts.
        """
        red = str(self.cfg.loss.fea_reduction)
        cross, own = cross.float(), own.float()
        center = self.fea_center_mode()
        if center is not None:
            # cos of deviations from the mean self latent: a shared offset in every α makes the
            # plain term sit at its minimum whatever the crosses carry (not in the spec)
            mean = own.mean(0, keepdim=True) if center == "batch" else self.running_center(name, own)
            if step is None or step >= self.fea_center_from():
                cross, own = cross - mean, own - mean
        halves = zip(cross.chunk(2), own.chunk(2))
        total = sum(feature_consistency_loss(c, o, red) for c, o in halves)
        return total * self.world_size if red == "sum" else total

    def fea_center_mode(self):
        mode = str(self.cfg.loss.fea_center).lower()
        if mode not in FEA_CENTER_MODES:
            raise EDTalkError(f"loss.fea_center must be false, batch (true) or running, got {self.cfg.loss.fea_center!r}")
        return FEA_CENTER_MODES[mode]

    def fea_center_from(self) -> int:
        start = self.cfg.loss.fea_center_from
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise EDTalkError(f"loss.fea_center_from must be a step number >= 0, got {start!r}")
        return start

    def image_halves_factor(self) -> float:
        mode = str(self.cfg.loss.image_halves)
        if mode not in ("mean", "sum"):
            raise EDTalkError(f"loss.image_halves must be mean or sum, got {mode!r}")
        return 2.0 if mode == "sum" else 1.0

    @torch.no_grad()
    def running_center(self, name: str, own: torch.Tensor) -> torch.Tensor:
        """The running mean of part `name`'s self latents, updated with this batch (all ranks'
        batches: every rank keeps the same mean); returns the mean before the update."""
        batch_mean = own.detach().mean(0, keepdim=True)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(batch_mean)
            batch_mean /= self.world_size
        key = f"fea_mean_{name}"
        current = self.center_state.get(key)
        if current is None:
            current = batch_mean.clone()
        m = float(self.cfg.loss.fea_center_momentum)
        self.center_state[key] = current * m + batch_mean * (1 - m)
        return current

    @property
    def center_state(self) -> dict:
        return self.__dict__.setdefault("_center_state", {})

    def state_dict(self):
        return {k: v.cpu() for k, v in self.center_state.items()}

    def load_state(self, state):
        self.center_state.clear()
        self.center_state.update({k: v.to(self.device) for k, v in state.items() if k.startswith("fea_mean_")})

    def sample_images(self, batch, ctx):
        f = self.forward(ctx.ema_model("gen"), batch)
        n = batch["a"].shape[0]
        return {"source": batch["a_id"], "driver": batch["a"], "self": f["self"][:n],
                "mouth_from": batch["b_a"], "pose_from": batch["a_b"], "cross": f["cross"][:n]}
