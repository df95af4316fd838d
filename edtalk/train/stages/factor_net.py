"""Stage ``synthtalk_factor_net``: train the SynthTalk factor network (the perceptual backbone that
replaces ImageNet VGG19 where no VGG weights exist; :mod:`edtalk.networks.factor_net`).

Data: every frame of the `data.split` clips of a SynthTalk tree (``data.root``, MEAD or HDTF
layout with ``factors/``), with per-frame mouth/pose/expression/blink and the speaker's visible
identity attributes as targets, standardised with the training split's mean/std (stored in the
network).  Loss: :func:`edtalk.train.factor_net.factor_loss`.  Export: the network as
``<run.dir>/export/synthtalk_factor_net/`` (safetensors + config.json) and the held-out R² per
group on `data.eval_split` (whole speakers never seen in training) in ``eval.json`` next to it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ...data import layout
from ...errors import InputError
from ...networks.factor_net import FactorNet, FactorNetConfig
from ..factor_net import (FactorFrameDataset, FactorFrames, evaluate_r2, factor_loss, load_factor_frames,
                          target_stats)
from ..stage import Stage, register_stage

_MODEL = FactorNetConfig()


@register_stage("synthtalk_factor_net")
class FactorNetStage(Stage):
    default_config = {
        "model": {"size": _MODEL.size, "channels": list(_MODEL.channels), "hidden": _MODEL.hidden},
        "loss": {"weights": {"mouth": 1.0, "pose": 1.0, "expression": 1.0, "blink": 1.0, "identity": 0.5}},
        "data": {"cache_dir": None, "eval_split": "test"},
        "train": {"batch_size": 32, "max_steps": 3000, "ema": 0.995},
        "optim": {"net": {"lr": 0.002, "betas": [0.9, 0.99], "weight_decay": 0.0}},
    }

    # ----------------------------------------------------------------------------- data

    def _frames(self, split: str) -> FactorFrames:
        cache_dir = self.cfg.data.get("cache_dir")
        cache = Path(cache_dir) / f"factor_frames_{split}.npz" if cache_dir else None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
        data = load_factor_frames(self.cfg.data.root, split, cache=cache)
        size = int(self.cfg.data.get("size") or self.cfg.model.size)
        if data.frames.shape[1] != size or data.frames.shape[2] != size:
            raise InputError(f"{self.cfg.data.root} has {data.frames.shape[1]}×{data.frames.shape[2]} frames; "
                             f"the factor network is configured for {size}×{size} (set model.size)")
        return data

    def _train_data(self) -> FactorFrames:
        if getattr(self, "_train", None) is None:
            self._train = self._frames(str(self.cfg.data.split))
        return self._train

    # ----------------------------------------------------------------------------- Stage API

    def build_models(self) -> Dict[str, torch.nn.Module]:
        m = self.cfg.model
        net = FactorNet(FactorNetConfig(size=int(m.size), channels=tuple(m.channels), hidden=int(m.hidden)))
        mean, std = target_stats(self._train_data().targets)
        net.target_mean.copy_(torch.from_numpy(mean))
        net.target_std.copy_(torch.from_numpy(std))
        return {"net": net}

    def trainable(self) -> Dict[str, List[str]]:
        return {"net": ["net"]}

    def ema_models(self) -> List[str]:
        return ["net"]  # the trainer applies no LR decay; an EMA copy gives the same smoothing

    def build_dataset(self) -> FactorFrameDataset:
        net = self.models["net"]
        return FactorFrameDataset(self._train_data(), net.target_mean.cpu().numpy(), net.target_std.cpu().numpy())

    def train_step(self, batch: Dict[str, torch.Tensor], ctx) -> Dict[str, torch.Tensor]:
        net = ctx.models["net"]
        with ctx.autocast():
            outputs = net(batch["image"])
        terms = factor_loss(_unwrap(net), outputs, batch["target"], self.cfg.loss.weights)
        ctx.optimize("net", terms["loss"])
        return {k: v.detach() for k, v in terms.items()}

    def export(self, out_dir, ctx) -> List[str]:
        net = _unwrap(ctx.ema_model("net"))
        folder = net.save_pretrained(Path(out_dir) / "synthtalk_factor_net")
        written = [str(folder / "model.safetensors"), str(folder / "config.json")]
        scores = self.evaluate(net)
        if scores is not None:
            (folder / "eval.json").write_text(json.dumps(scores, indent=1))
            written.append(str(folder / "eval.json"))
        return written

    def evaluate(self, net: FactorNet) -> Optional[Dict]:
        """Held-out R² per group on `data.eval_split` (None when that split is absent/empty)."""
        split = self.cfg.data.get("eval_split")
        root = Path(self.cfg.data.root)
        if not split or not (root / f"{split}.json").is_file() or not layout.read_split(root, str(split)):
            return None
        data = self._frames(str(split))
        r2 = evaluate_r2(net, data)
        return {"split": str(split), "clips": len(data.names), "frames": int(len(data.frames)),
                "r2": {k: round(float(v), 4) for k, v in r2.items()}}


def _unwrap(module: torch.nn.Module) -> FactorNet:
    """The FactorNet inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)
