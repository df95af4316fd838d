"""Can a generator render an expression at all?  The render ceiling of a SynthTalk `--shared-motion` tree.

On such a tree frame t of a speaker's neutral clip and frame t of its emotional clips differ only
in expression, so a pair (neutral source, emotional target) asks the generator for the expression
and nothing else.  :func:`render_ceiling` fits a free latent per pair (`what="latent"`: is there a z
that draws it?), a free α_e per pair (`what="exp"`, a full model: can the expression branch draw
it?) or every weight of the model on those pairs alone (`what="weights"`: can
the architecture draw it when overfitting?), and reports the L1 on the changed pixels before and
after, next to the L1 of copying the source.  docs/training/stage1_ab.md holds the measurements.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..data import layout
from ..data.datasets import Stage0Pairs
from ..errors import InputError

__all__ = ["expression_pairs", "changed_pixels", "render_ceiling", "CHANGE_THRESHOLD"]

CHANGE_THRESHOLD = 0.1  # mean channel |source − target| (images in [-1, 1]) that counts as a changed pixel


def expression_pairs(root, count: int = 16, seed: int = 0, split: str = "train", level: int = 3,
                     size=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sources, targets) [count,3,S,S]: neutral frame t and emotional frame t of one speaker, from
    `count` emotional clips of `level` (a `--shared-motion` tree; anything else is refused)."""
    manifest = Path(root) / "synthtalk.json"
    if not manifest.is_file() or not json.loads(manifest.read_text()).get("shared_motion"):
        raise InputError(f"{root} is not a SynthTalk --shared-motion tree: its pairs would differ in more "
                         "than expression")
    ds = Stage0Pairs(root, split=split, seed=seed, size=size, same_frame_rate=1.0)
    labels = [layout.parse_mead_name(name) for name in ds.names]
    order = np.random.default_rng(seed).permutation(len(ds.names))
    picked = [int(i) for i in order if labels[i].emotion != "neutral" and labels[i].level == level][:count]
    if len(picked) < count:
        raise InputError(f"{root} ({split}) has {len(picked)} emotional clips of level {level}, {count} asked")
    items = [ds[i] for i in picked]
    return torch.stack([it["source"] for it in items]), torch.stack([it["target"] for it in items])


def changed_pixels(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """bool [B,1,H,W]: where the expression changed the frame."""
    return (source - target).abs().mean(1, keepdim=True) > CHANGE_THRESHOLD


def _l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> Tuple[float, float]:
    err = (output - target).abs().mean(1, keepdim=True)
    return float(err.mean()), float(err[mask].mean())


def render_ceiling(model, source: torch.Tensor, target: torch.Tensor, what: str = "weights", steps: int = 600,
                   lr: float = None, every: int = 100) -> Dict[str, object]:
    """Fit `what` ("latent": a free z per pair, the weights frozen; "exp": a free α_e per pair,
    starting from the model's own, a full model; "weights": every weight) to
    render `target` from `source` (L1, Adam, full batch) and measure frame and changed-pixel L1.

    Returns {"what", "steps", "pixels_changed" (fraction), "copy" (changed-pixel L1 of the source
    itself), "copy_frame" (its frame L1), "floor" (changed-pixel L1 of the model's reconstruction of
    each target from itself, after the fit: what the model draws there when nothing has to change),
    "before"/"after" ({"frame", "changed"}), "curve" [(step, frame, changed)]}.  The model
    is changed in place when `what="weights"`.
    """
    if what not in ("latent", "exp", "weights"):
        raise InputError(f"what must be latent, exp or weights, got {what!r}")
    if what == "exp" and not model.has_expression:
        raise InputError("what=exp needs a full model (with the expression branch), got a lip-pose model")
    mask = changed_pixels(source, target)
    if not mask.any():
        raise InputError("the pairs do not differ: no changed pixels")
    lr = lr if lr is not None else (1e-3 if what == "weights" else 0.05)
    model.train(what == "weights")
    for p in model.parameters():
        p.requires_grad_(what == "weights")
    if what == "latent":
        with torch.no_grad():
            wa, feats = model.encode(source)
            weights = model.motion_weights(target)
            z0, _ = model.motion_latent(wa, weights["mouth"], weights["pose"])
        dz = torch.zeros_like(z0, requires_grad=True)
        params: List[torch.Tensor] = [dz]
        render = lambda: model.dec(z0 + dz, feats, None)  # noqa: E731
    elif what == "exp":
        with torch.no_grad():
            wa, feats = model.encode(source)
            weights = model.motion_weights(target)
        exp = weights["exp"].clone().requires_grad_(True)
        params = [exp]
        render = lambda: model.render(wa, feats, weights["mouth"], weights["pose"], exp)  # noqa: E731
    else:
        params = list(model.parameters())
        render = lambda: model(source, target)  # noqa: E731
    opt = torch.optim.Adam(params, lr=lr)
    curve = []
    for step in range(steps + 1):
        output = render()
        loss = (output - target).abs().mean()
        if step % every == 0 or step == steps:
            curve.append((step, *_l1(output.detach(), target, mask)))
        if step == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    copy_frame, copy = _l1(source, target, mask)
    model.eval()
    with torch.no_grad():
        floor = _l1(model(target, target), target, mask)[1]
    return {"what": what, "steps": steps, "pixels_changed": float(mask.float().mean()),
            "copy": copy, "copy_frame": copy_frame, "floor": floor,
            "before": {"frame": curve[0][1], "changed": curve[0][2]},
            "after": {"frame": curve[-1][1], "changed": curve[-1][2]}, "curve": curve}
