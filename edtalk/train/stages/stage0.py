"""Stage 0 — encoder/decoder reconstruction (docs/design.md §8.1), LIA style.

Î = G(appearance of `source`, every motion weight from `target`); G loss = L1 + pyramid
perceptual + GAN (weights 1); D on (target, Î).  Trained in the lip-pose model's key space (a LIA
`vox.pt` is converted first, §4.3), so stage 1 starts from the export directly.
"""
from __future__ import annotations

from ..stage import register_stage
from .common import GENERATOR_DEFAULTS, GeneratorStage


@register_stage("stage0")
class Stage0(GeneratorStage):
    default_config = GENERATOR_DEFAULTS
    dataset_spec = "edtalk.data.datasets:Stage0Pairs"

    def train_step(self, batch, ctx):
        return self.reconstruction_step(batch, ctx)

    def sample_images(self, batch, ctx):
        gen = ctx.ema_model("gen")
        return {"source": batch["source"], "driver": batch["target"], "output": gen(batch["source"], batch["target"])}
