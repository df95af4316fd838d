"""Data, loss and held-out evaluation of the SynthTalk factor network (:mod:`edtalk.networks.factor_net`).

The network is trained by the one trainer as the stage ``synthtalk_factor_net``
(:mod:`edtalk.train.stages.factor_net`); this module holds what that stage, the evaluation and
the tests share:

- :func:`load_factor_frames`: every frame of a SynthTalk MEAD/HDTF tree's split with its targets
  (per-frame mouth/pose/expression/blink + the clip's visible identity attributes), decoded once
  and optionally cached as one ``.npz``;
- :class:`FactorFrameDataset`: map-style items ``{"image", "target"}`` for the trainer;
- :func:`factor_loss`: mean squared error of standardised targets, averaged within a group and
  weighted across groups (so the 35 identity numbers do not outweigh the 3 mouth numbers);
- :func:`evaluate_r2`: R² of the network's predictions on a held-out split, per group;
- :func:`factor_column_r2` and :func:`measure_ceiling`: the *ceiling* of a tree, the held-out R²
  per factor column (mouth opening, yaw, …, blink) that this supervised network reaches when it is
  trained on the tree's own train split: how much of each factor is visible at all at that
  resolution.  ``scripts/factor_ceiling.py`` is its command line; the generator probes of
  :mod:`edtalk.eval.probes` report themselves as fractions of it (:func:`edtalk.eval.probes.relative_to_ceiling`).

Importing this module registers the perceptual backbone ``synthtalk_factor_net`` with
:func:`edtalk.train.losses.register_backbone` (the losses module imports it on first use).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import layout
from ..data.synthtalk_render import HAIR_STYLES
from ..errors import EDTalkError, InputError
from ..eval.disentangle import r2_score
from ..networks.factor_net import FactorNet, load_factor_backbone
from .losses import register_backbone

__all__ = ["FactorFrames", "identity_targets", "load_factor_frames", "FactorFrameDataset", "factor_loss",
           "evaluate_r2", "predict_frames", "images_from_uint8", "target_stats", "FACTOR_COLUMNS",
           "CEILING_FILE", "CEILING_CONFIG", "factor_column_r2", "measure_ceiling"]

# Index of the hair-style entry in Identity.vector(); entries after 31 (f0, tract) are the voice.
_STYLE_INDEX, _VISIBLE_END = 14, 32


def identity_targets(vectors: np.ndarray) -> np.ndarray:
    """Identity.vector() rows [N,34] → visible attributes [N,35] (style index as a one-hot)."""
    v = np.asarray(vectors, dtype=np.float32).reshape(-1, vectors.shape[-1])
    style = np.eye(len(HAIR_STYLES), dtype=np.float32)[v[:, _STYLE_INDEX].round().astype(int)]
    return np.concatenate([v[:, :_STYLE_INDEX], style, v[:, _STYLE_INDEX + 1:_VISIBLE_END]], 1)


@dataclass
class FactorFrames:
    """Frames uint8 [N,S,S,3], targets float32 [N,51] (FactorNetConfig.groups order), clip index
    per frame [N], clip names."""

    frames: np.ndarray
    targets: np.ndarray
    groups: np.ndarray
    names: List[str]


def _clip_targets(root: Path, name: str) -> np.ndarray:
    path = layout.clip_path(root, "factors", name)
    if not path.is_file():
        raise InputError(f"missing factors for {name}: {path} (a SynthTalk tree is needed)")
    with np.load(path, allow_pickle=False) as fz:
        per_frame = [fz[k].reshape(fz[k].shape[0], -1) for k in layout.FACTOR_FRAME_KEYS]
        ident = identity_targets(fz["identity"][None])
    T = per_frame[0].shape[0]
    return np.concatenate(per_frame + [np.repeat(ident, T, 0)], 1).astype(np.float32)


def load_factor_frames(root: os.PathLike, split: str = "train", cache: Optional[os.PathLike] = None,
                       max_clips: Optional[int] = None) -> FactorFrames:
    """All frames of `split` of a SynthTalk tree with their targets; `cache` (.npz) is read if it
    exists and written otherwise (decoding ~900 clips takes about a minute)."""
    from ..video import read_video

    root = Path(root)
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            return FactorFrames(z["frames"], z["targets"], z["groups"], [str(n) for n in z["names"]])
    names = layout.read_split(root, split)[:max_clips]
    if not names:
        raise InputError(f"the {split} split of {root} is empty")
    frames, targets, groups = [], [], []
    for i, name in enumerate(_progress(names, f"decode {split}")):
        video, _ = read_video(layout.clip_path(root, "video", name))
        target = _clip_targets(root, name)
        if len(video) != len(target):
            raise InputError(f"{name}: {len(video)} video frames but {len(target)} factor rows")
        frames.append(video)
        targets.append(target)
        groups.append(np.full(len(video), i))
    data = FactorFrames(np.concatenate(frames), np.concatenate(targets), np.concatenate(groups), list(names))
    if cache is not None:
        tmp = Path(str(cache) + ".tmp.npz")
        np.savez(tmp, frames=data.frames, targets=data.targets, groups=data.groups, names=np.array(data.names))
        os.replace(tmp, cache)
    return data


def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="clip", leave=False, dynamic_ncols=True, disable=None)


def images_from_uint8(frames) -> torch.Tensor:
    """uint8 [...,S,S,3] (numpy or tensor) → float [...,3,S,S] in [-1,1]."""
    x = torch.as_tensor(frames)
    return x.movedim(-1, -3).float().div(127.5).sub(1.0)


class FactorFrameDataset(Dataset):
    """Items ``{"image": [3,S,S] in [-1,1], "target": standardised [51]}`` (deterministic)."""

    def __init__(self, data: FactorFrames, mean: np.ndarray, std: np.ndarray):
        self.frames = torch.from_numpy(np.ascontiguousarray(data.frames))
        self.targets = torch.from_numpy((data.targets - mean) / std).float()

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return {"image": images_from_uint8(self.frames[index]), "target": self.targets[index]}


def target_stats(targets: np.ndarray, floor: float = 1e-3):
    """Per-column mean and std (std floored so a constant column stays finite)."""
    return targets.mean(0).astype(np.float32), np.maximum(targets.std(0), floor).astype(np.float32)


def factor_loss(model: FactorNet, outputs: torch.Tensor, targets: torch.Tensor,
                weights: Mapping[str, float]) -> Dict[str, torch.Tensor]:
    """{'loss': Σ_g w_g·mean_g (ŷ−y)², '<group>': each group's mean} on standardised targets."""
    pred, true = model.split(outputs), model.split(targets)
    terms = {g: (pred[g].float() - true[g].float()).square().mean() for g in pred}
    terms["loss"] = sum(float(weights.get(g, 1.0)) * t for g, t in terms.items())
    return terms


@torch.no_grad()
def predict_frames(model: FactorNet, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predictions in factor units [N, num_outputs] for uint8 frames [N,S,S,3]."""
    param = next(model.parameters())
    out = []
    for i in range(0, len(frames), batch_size):
        x = images_from_uint8(frames[i:i + batch_size]).to(param.device, param.dtype)
        out.append(torch.cat(list(model.predict(x).values()), 1).float().cpu())
    return torch.cat(out).numpy()


def predict_in_eval_mode(model: FactorNet, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """:func:`predict_frames` with the model in eval mode (batch-norm statistics fixed); its mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return predict_frames(model, frames, batch_size)
    finally:
        model.train(was_training)


def evaluate_r2(model: FactorNet, data: FactorFrames, batch_size: int = 256) -> Dict[str, float]:
    """Held-out R² of the predictions per group (mean over the group's varying columns), plus
    ``mouth_open`` alone (the factor a talking-head model must get right first)."""
    pred = predict_in_eval_mode(model, data.frames, batch_size)
    pred_g, true_g = model.split(torch.from_numpy(pred)), model.split(torch.from_numpy(data.targets))
    scores = {g: r2_score(true_g[g].numpy(), pred_g[g].numpy()) for g in pred_g}
    scores["mouth_open"] = r2_score(true_g["mouth"][:, 0].numpy(), pred_g["mouth"][:, 0].numpy())
    return scores


def _backbone_from_options(options: Mapping) -> torch.nn.Module:
    """`loss.perceptual.backbone: synthtalk_factor_net`; `loss.perceptual.weights` = a saved folder
    (default: $EDTALK_FACTOR_NET, else the shipped checkpoints/synthtalk_factor_net);
    `loss.perceptual.factor_head: true` adds the net's factor predictions as a last layer."""
    return load_factor_backbone(options.get("weights"), with_head=bool(options.get("factor_head", False)))


register_backbone("synthtalk_factor_net", _backbone_from_options)


# --------------------------------------------------------------------------- ceilings

# The per-frame factor columns of the targets (FactorNetConfig.groups order: mouth [3], pose [6],
# expression [6], blink [1]; identity follows), as the keys of a ceiling.
FACTOR_COLUMNS = ("mouth_open", "mouth_width", "mouth_round", "yaw", "pitch", "roll", "tx", "ty", "scale",
                  "brow_raise", "brow_furrow", "eyelid", "cheek", "corner_curve", "corner_asym", "blink")
CEILING_FILE = "ceiling.json"
CEILING_RUN_FILE = "ceiling_run.json"
CEILING_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train" / "factor_net_ceiling.yaml"


def factor_column_r2(model: FactorNet, data: FactorFrames, batch_size: int = 256) -> Dict[str, float]:
    """Held-out R² of `model`'s predictions for each per-frame factor column of `data`
    ({name in :data:`FACTOR_COLUMNS`: R²}; NaN for a column that does not vary in `data`)."""
    pred = predict_in_eval_mode(model, data.frames, batch_size)
    return {name: r2_score(data.targets[:, j], pred[:, j]) for j, name in enumerate(FACTOR_COLUMNS)}


def _check_same_tree(run_dir: Path, root: Path) -> None:
    """A ceiling folder belongs to one tree: resuming it on another would mix two trees' runs."""
    meta = run_dir.parent / CEILING_RUN_FILE
    if meta.is_file():
        try:
            previous = json.loads(meta.read_text()).get("tree")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous and Path(previous).resolve() != root.resolve():
            raise InputError(f"{run_dir.parent} holds the ceiling of another tree ({previous}); give another --out")


def measure_ceiling(root: os.PathLike, out_dir: os.PathLike, steps: Optional[int] = None, seed: int = 0,
                    config: Optional[os.PathLike] = None, overrides: Sequence[str] = (), split: str = "test",
                    max_minutes: Optional[float] = None, progress: bool = False) -> Dict[str, float]:
    """Train the factor network on the train split of the SynthTalk tree `root` and return its
    held-out R² per factor column on `split` (whole speakers it never saw): the tree's ceiling.

    The run is the trainer's stage ``synthtalk_factor_net`` with `config` (default
    ``configs/train/factor_net_ceiling.yaml``, the stated budget) in ``out_dir/run``, so it is
    resumable: a second call with the same `out_dir` continues from the last checkpoint (or only
    re-evaluates a finished run).  `steps` overrides ``train.max_steps``, `seed` the run's seed,
    `max_minutes` sets ``train.max_minutes`` (a stopped run is finished by calling again).
    Decoded frames are cached in ``out_dir/cache``.  Writes ``out_dir/ceiling.json`` ({factor: R²},
    rounded to 4 decimals; the keys of :data:`FACTOR_COLUMNS`) and ``out_dir/ceiling_run.json``
    (tree, split, steps, seed, frames, minutes) and returns the unrounded {factor: R²}.
    """
    from .config import load_train_config
    from .trainer import train

    root, out = Path(root), Path(out_dir)
    if not (root / "train.json").is_file():
        raise InputError(f"{root} is not a SynthTalk tree with a train split (no train.json)")
    if not (root / f"{split}.json").is_file() or not layout.read_split(root, split):
        raise InputError(f"{root} has no clips in its {split} split to measure a ceiling on")
    if steps is not None and int(steps) < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    run_dir = out / "run"
    _check_same_tree(run_dir, root)
    options = [f"data.root={root}", f"run.dir={run_dir}", f"data.cache_dir={out / 'cache'}", f"seed={int(seed)}",
               f"data.eval_split={split}", f"run.progress={bool(progress)}"]
    size = _tree_size(root)
    if size is not None:  # the ceiling at the tree's own resolution
        options.append(f"model.size={size}")
    if steps is not None:
        options.append(f"train.max_steps={int(steps)}")
    if max_minutes is not None:
        options.append(f"train.max_minutes={float(max_minutes)}")
    cfg = load_train_config(str(config or CEILING_CONFIG), options + list(overrides))
    if cfg.stage != "synthtalk_factor_net":
        raise EDTalkError(f"a ceiling trains the stage synthtalk_factor_net, {config} names {cfg.stage}")
    out.mkdir(parents=True, exist_ok=True)
    (out / CEILING_RUN_FILE).write_text(json.dumps({"tree": str(root.resolve())}) + "\n")  # claims the folder
    t0 = time.perf_counter()
    result = train(cfg)
    net = FactorNet.from_pretrained(run_dir / "export" / "synthtalk_factor_net")
    data = load_factor_frames(root, split, cache=out / "cache" / f"factor_frames_{split}.npz")
    r2 = factor_column_r2(net, data)
    (out / CEILING_FILE).write_text(json.dumps({k: _round(v) for k, v in r2.items()}, indent=1) + "\n")
    meta = {"tree": str(root.resolve()), "split": split, "clips": len(data.names), "frames": int(len(data.frames)),
            "size": int(data.frames.shape[1]), "step": int(result.step), "max_steps": int(cfg.train.max_steps),
            "complete": int(result.step) >= int(cfg.train.max_steps), "batch_size": int(cfg.train.batch_size),
            "seed": int(seed), "config": str(config or CEILING_CONFIG), "overrides": list(overrides),
            "minutes_this_call": round((time.perf_counter() - t0) / 60.0, 2)}
    (out / CEILING_RUN_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return r2


def _tree_size(root: Path) -> Optional[int]:
    """The frame size a SynthTalk tree's manifest states (None when it states none)."""
    try:
        size = json.loads((root / "synthtalk.json").read_text()).get("size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(size) if isinstance(size, int) else None


def _round(value: float) -> Optional[float]:
    return round(float(value), 4) if np.isfinite(value) else None  # strict JSON: NaN → null
