"""What the generator stages (0 and 1) share: models, reconstruction/GAN losses, the D step and
the exports (our safetensors folder and an official-format `.pt`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...checkpoints import load_state_dict_strict
from ...config import OFFICIAL_CHANNELS, DiscriminatorConfig, EDTalkConfig
from ...errors import EDTalkError
from ...networks.discriminator import Discriminator
from ..init import init_generator
from ...nn.ops import scalar
from ..losses import (PYRAMID_SCALES, PyramidPerceptualLoss, box_l1_per_sample, box_mask, build_backbone,
                      d_logistic_loss, g_nonsaturating_loss, l1_per_sample, r1_penalty)
from ..stage import Stage
from ..trainer import atomic_torch_save, import_object

GENERATOR_DEFAULTS = {
    "model": {
        "size": 256,
        "latent_dim": 512,
        "channels": dict(OFFICIAL_CHANNELS),
        "init": "scratch",      # scratch | lia | official | pretrained
        "init_path": None,      # vox.pt / EDTalk_lip_pose.pt / exported .pt / saved model folder
        "flow_init": "random",  # scratch only: random (official) | identity (warps start at zero flow)
        "dis_channels": None,   # None = the generator's channels
        "stddev_group": 4,
    },
    "loss": {
        "l1": 1.0,
        "perceptual": {
            "weight": 1.0,
            "backbone": "vgg19",  # vgg19 | synthtalk_factor_net | none
            "weights": None,      # vgg19: the .pth (else $EDTALK_VGG19_WEIGHTS / torchvision's cache);
                                  # synthtalk_factor_net: its saved folder
            "factor_head": False,  # synthtalk_factor_net: also compare its factor predictions
            "scales": list(PYRAMID_SCALES),
            "layer_weight": 10.0,
        },
        # L1 inside boxes of the target's brows, eyes and mouth (their landmarks; datasets with
        # a `regions` option: stage 0): expression and lips are a few % of the frame, so a
        # frame-wide loss hardly sees them.  0 = off (the official loss).
        "regions": {"weight": 0.0, "parts": ["brows", "eyes", "mouth"]},
        "adv": 1.0,               # 0 = no discriminator
        "r1": 0.0,                # R1 γ (0 = off, the spec's setting)
        "r1_every": 16,
    },
    "optim": {
        "gen": {"lr": 0.002 * 4 / 5, "betas": [0.0, 0.99 ** (4 / 5)]},
        "dis": {"lr": 0.002 * 16 / 17, "betas": [0.0, 0.99 ** (16 / 17)]},
    },
}


def full_generator_config(m) -> EDTalkConfig:
    """A full-model (with expression) config from `cfg.model`, so an EDTalk (EDTalk.pt, a phase A
    export) loads whole; a lip-pose file still loads as lip-pose (its variant is read from the keys)."""
    return EDTalkConfig(size=int(m.size), latent_dim=int(m.latent_dim), channels=dict(m.channels),
                        exp_dim=int(m.exp_dim), adain_hidden=int(m.adain_hidden))


class GeneratorStage(Stage):
    """Lip-pose generator + StyleGAN2 discriminator, trained with L1 + pyramid perceptual + GAN."""

    dataset_spec = ""  # "module:Class" of the default dataset

    # -- models ---------------------------------------------------------------------------------
    def generator_config(self) -> EDTalkConfig:
        m = self.cfg.model
        return EDTalkConfig(size=int(m.size), latent_dim=int(m.latent_dim), channels=dict(m.channels), exp_dim=0)

    def build_models(self) -> Dict[str, nn.Module]:
        m, seed = self.cfg.model, int(self.cfg.seed)
        gen, dis_state = init_generator(str(m.init), m.init_path, self.generator_config(), seed,
                                        str(m.get("flow_init", "random")))
        for p in gen.dead_parameters():  # EEM branch that never gets a gradient (§2.6)
            p.requires_grad_(False)
        models = {"gen": gen.train()}
        if float(self.cfg.loss.adv) > 0:
            channels = dict(m.dis_channels) if m.dis_channels else dict(gen.config.channels)
            dis = Discriminator(DiscriminatorConfig(size=gen.config.size, channels=channels,
                                                    stddev_group=int(m.stddev_group)))
            if dis_state is not None:
                load_state_dict_strict(dis, dis_state, "discriminator")
            models["dis"] = dis.train()
        p = self.cfg.loss.perceptual
        self.perceptual = None
        if float(p.weight) > 0 and p.backbone != "none":
            options = {"weights": p.weights, "factor_head": p.get("factor_head", False)}
            backbone = build_backbone(str(p.backbone), options).to(self.device)
            self.perceptual = PyramidPerceptualLoss(backbone, tuple(p.scales), float(p.layer_weight)).to(self.device)
        return models

    def build_dataset(self):
        d = self.cfg.data
        cls = import_object(str(d.dataset or self.dataset_spec))
        size = int(d.size) if d.size else int(self.cfg.model.size)
        try:
            extra = {"length": int(d.length)} if d.length else {}
            # pair options reach only the datasets that have them (set only when not the default)
            for key in ("cross_clip_rate", "exp_pair_rate", "same_frame_rate"):
                if float(d.get(key, 0.0)) > 0:
                    extra[key] = float(d[key])
            if d.get("max_pose_gap") is not None:
                extra["max_pose_gap"] = float(d.max_pose_gap)
            if self.region_weight() > 0:
                extra["regions"] = list(self.cfg.loss.regions.parts)
            return cls(str(d.root), split=str(d.split), size=size, seed=int(self.cfg.seed), **extra)
        except FileNotFoundError as exc:
            raise EDTalkError(f"data.root {d.root}: {exc}") from None
        except TypeError as exc:  # e.g. data.max_pose_gap with a stage-1 dataset
            raise EDTalkError(f"data options {sorted(set(extra) - {'length'})} do not apply to {cls.__name__}: {exc}") from None

    def trainable(self):
        return {name: [name] for name in ("gen", "dis") if name in self.models}

    def compile_targets(self):
        """The generator's encoder and decoder, the discriminator (not with R1: compiled graphs
        have no double backward) and the perceptual backbone."""
        gen = self.models["gen"]
        targets = [gen.enc, gen.dec]
        if "dis" in self.models and float(self.cfg.loss.r1) <= 0:
            targets.append(self.models["dis"])
        if self.perceptual is not None:
            targets.append(self.perceptual.backbone)
        return targets

    # -- losses ---------------------------------------------------------------------------------
    def region_weight(self) -> float:
        regions = self.cfg.loss.get("regions")
        return float(regions.weight) if regions is not None else 0.0

    def reconstruction_losses(self, output: torch.Tensor, target: torch.Tensor, prefix: str) -> Dict[str, torch.Tensor]:
        """Weighted L1 and perceptual terms of one output against its target."""
        return self.image_terms([(prefix, 1.0, output)], target)[1]

    def image_terms(self, outputs: Sequence[Tuple[str, float, torch.Tensor]], target: torch.Tensor,
                    boxes: Optional[torch.Tensor] = None, mouth: float = 0.0,
                    regions: Optional[torch.Tensor] = None, region_weight: float = 0.0):
        """Weighted L1, perceptual, (with `boxes` and `mouth` > 0) lip-box L1 and (with `regions`
        [N,R,4] and `region_weight` > 0) region L1 terms (the mean of the R boxes' L1) of several
        outputs against one target batch, in one pass: the targets' features are computed once
        and the backbone runs once on all outputs (per part, one batched call did three times
        the work before).  `outputs`: (prefix, part weight, images [N,...]) each, N = the
        target's batch.  Returns (the weighted sum, {f"{prefix}_l1" / "_perc" / "_mouth" /
        "_regions": term}).
        """
        loss = self.cfg.loss
        images = torch.cat([o for _, _, o in outputs]) if len(outputs) > 1 else outputs[0][2]
        kinds = [("l1", float(loss.l1), l1_per_sample(images, target))]
        if self.perceptual is not None:
            feats = self.perceptual.target_features(target)
            kinds.append(("perc", float(loss.perceptual.weight), self.perceptual.per_sample(images, feats)))
        if boxes is not None and mouth > 0:
            mask = box_mask(boxes, target.shape[-1])
            kinds.append(("mouth", mouth, box_l1_per_sample(images, target, mask)))
        if regions is not None and region_weight > 0:
            size = target.shape[-1]
            per_region = [box_l1_per_sample(images, target, box_mask(regions[:, r], size))
                          for r in range(regions.shape[1])]
            kinds.append(("regions", region_weight, torch.stack(per_region).mean(0)))
        means = torch.stack([v for _, _, v in kinds]).view(len(kinds), len(outputs), -1).mean(-1)  # [kinds, parts]
        weighted = means * self._term_weights([k[1] for k in kinds], [o[1] for o in outputs], means)
        terms = {f"{prefix}_{kind}": weighted[i, j]
                 for i, (kind, _, _) in enumerate(kinds) for j, (prefix, _, _) in enumerate(outputs)}
        return weighted.sum(), terms

    def _term_weights(self, kind_weights: List[float], part_weights: List[float], like: torch.Tensor) -> torch.Tensor:
        """[kinds, parts] products of the two weight lists, cached as a tensor like `like`."""
        key = (tuple(kind_weights), tuple(part_weights), like.dtype, like.device)
        cache = self.__dict__.setdefault("_weights_cache", {})
        if key not in cache:
            cache[key] = torch.tensor([[k * p for p in part_weights] for k in kind_weights], dtype=like.dtype,
                                      device=like.device)
        return cache[key]

    def adversarial_loss(self, fakes: torch.Tensor) -> Dict[str, torch.Tensor]:
        if "dis" not in self.models:
            return {}
        adv = g_nonsaturating_loss(self.models["dis"](fakes))
        return {"adv": adv * scalar(float(self.cfg.loss.adv), adv)}

    def discriminator_step(self, ctx, real: torch.Tensor, fake: torch.Tensor) -> Dict[str, torch.Tensor]:
        """D update on real vs fake.detach() (+ lazy R1 every r1_every steps)."""
        if "dis" not in self.models:
            return {}
        dis, loss = self.models["dis"], self.cfg.loss
        ctx.set_requires_grad("dis", True)
        use_r1 = float(loss.r1) > 0 and ctx.step % int(loss.r1_every) == 0
        real = real.detach().requires_grad_(use_r1)
        with ctx.autocast():
            real_logits, fake_logits = dis(real), dis(fake.detach())
            d_loss = d_logistic_loss(real_logits, fake_logits)
        logs = {"d": d_loss.detach()}
        total = d_loss
        if use_r1:
            r1 = r1_penalty(real_logits.float(), real)
            total = total + float(loss.r1) / 2 * int(loss.r1_every) * r1
            logs["r1"] = r1.detach()
        ctx.optimize("dis", total)
        ctx.set_requires_grad("dis", False)
        logs["d_real"] = real_logits.detach().mean()
        logs["d_fake"] = fake_logits.detach().mean()
        return logs

    def generator_update(self, ctx, terms: Dict[str, torch.Tensor],
                         total: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Optimise G on `total` (default: the sum of `terms`); the terms are logged."""
        if total is None:
            total = sum(terms.values())
        ctx.optimize("gen", total)
        return {"g_total": total.detach(), **{k: v.detach() for k, v in terms.items()}}

    def before_generator(self, ctx) -> None:
        if "dis" in self.models:
            ctx.set_requires_grad("dis", False)

    def reconstruction_step(self, batch, ctx) -> Dict[str, torch.Tensor]:
        """Î = G(source, every motion weight from target): G on L1 + perceptual + GAN, then D on
        (target, Î) — the whole step of stage 0 and fine-tuning."""
        gen = self.models["gen"]
        source, target = batch["source"], batch["target"]
        self.before_generator(ctx)
        with ctx.autocast():
            output = gen(source, target)
            terms = self.image_terms([("rec", 1.0, output)], target, regions=batch.get("target_regions"),
                                     region_weight=self.region_weight())[1]
            terms.update(self.adversarial_loss(output))
        logs = self.generator_update(ctx, terms)
        logs.update(self.discriminator_step(ctx, target, output))
        return logs

    # -- exports --------------------------------------------------------------------------------
    def export(self, out_dir, ctx) -> List[str]:
        """Our safetensors folder (`model/`) and `<step:06d>.pt` in the official training format."""
        out_dir = Path(out_dir)
        gen = ctx.ema_model("gen")
        folder = gen.save_pretrained(out_dir / "model")
        path = out_dir / f"{ctx.step:06d}.pt"
        atomic_torch_save(official_checkpoint(gen, self.models.get("dis"), self.cfg, ctx.optimizers), path)
        return [str(folder), str(path)]


def official_args(cfg) -> argparse.Namespace:
    """The training options as the flat argparse.Namespace official checkpoints carry in 'args'."""
    from ..config import to_container

    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            key = f"{prefix}_{k}" if prefix else str(k)
            if isinstance(v, dict):
                walk(key, v)
            elif isinstance(v, (str, int, float, bool)) or v is None:
                flat[key] = v
            else:
                flat[key] = str(v)

    walk("", to_container(cfg))
    return argparse.Namespace(**flat)


def official_checkpoint(gen: nn.Module, dis: Optional[nn.Module], cfg, optimizers) -> dict:
    """{'gen','dis','g_optim','d_optim','args'} with the official key names (§4.1)."""
    return {
        "gen": {k: v.detach().cpu() for k, v in gen.state_dict().items()},
        "dis": {k: v.detach().cpu() for k, v in dis.state_dict().items()} if dis is not None else {},
        "g_optim": optimizers["gen"].state_dict() if "gen" in optimizers else {},
        "d_optim": optimizers["dis"].state_dict() if "dis" in optimizers else {},
        "args": official_args(cfg),
    }
