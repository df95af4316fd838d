"""Motion weights of training clips (docs/design.md §8.8) and expression presets made from them.

Extraction runs a generator's encoder and navigation heads over every frame of a layout tree
and caches the weights next to the other side files (the layout and its reader:
:mod:`edtalk.data.motion_cache`).

The official recipe takes α_m/α_p from the lip-pose model and α_e from EDTalk: run extraction
once per model with the matching `parts`.  Extraction is idempotent (clips whose files exist are
skipped unless `overwrite`) and writes every file atomically, so an interrupted run resumes.

Library::

    extract_motion(model, root, names=None, parts=("mouth", "pose", "exp"), batch_size=32)
    load_motion(root, name, "exp")          # → [T,10]; InputError naming the command if missing
    presets = compute_presets(root, levels=(3,))      # emotion → mean α_e over the train split
    write_presets(presets, out_dir)          # <emotion>.npy (1,10) + presets.json

CLI (:mod:`edtalk.cli` parses; `run_extract_motion` / `run_make_presets` do the work)::

    edtalk extract-motion --checkpoint CKPT --data TREE [--parts mouth,pose,exp] [--split train|test|all]
    edtalk make-presets --checkpoint EDTALK --data MEAD_TREE [--levels 3|all] --out DIR
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from ..data import layout
from ..data.motion_cache import PART_DIMS, PART_DIRS, load_motion, motion_path
from ..data.motion_cache import save_array_atomic as _save_atomic
from ..errors import InputError

__all__ = ["PART_DIRS", "PART_DIMS", "motion_path", "extract_motion", "load_motion", "load_generator",
           "compute_presets", "write_presets", "PRESETS_JSON", "run_extract_motion", "run_make_presets"]

PRESETS_JSON = "presets.json"


def _check_parts(parts: Sequence[str], model) -> List[str]:
    parts = list(dict.fromkeys(parts))
    for part in parts:
        if part not in PART_DIRS:
            raise InputError(f"unknown motion part {part!r}; choose from {', '.join(PART_DIRS)}")
    if "exp" in parts and not model.has_expression:
        raise InputError("the lip-pose model has no expression head: extract 'exp' with an EDTalk (full) model")
    if not parts:
        raise InputError("no motion parts to extract")
    return parts


def _clip_weights(model, store, name: str, parts: Sequence[str], batch_size: int) -> Dict[str, np.ndarray]:
    """α of every frame of one clip, batched: part → float32 [T,dim]."""
    from ..data.datasets import to_tensor
    from ..data.store import resize_frame

    size, total = model.config.size, store.num_frames(name)
    chunks: Dict[str, list] = {p: [] for p in parts}
    for start in range(0, total, batch_size):
        frames = store.frames(name, range(start, min(start + batch_size, total)))
        images = torch.stack([to_tensor(resize_frame(f, size)) for f in frames])
        alpha = model.motion_weights(images.to(model.device, model.dtype), parts=tuple(parts))
        for p in parts:
            chunks[p].append(alpha[p].float().cpu().numpy())
    return {p: np.concatenate(chunks[p]).astype(np.float32) for p in parts}


def extract_motion(model, root, names: Optional[Iterable[str]] = None, parts: Sequence[str] = ("mouth", "pose", "exp"),
                   batch_size: int = 32, overwrite: bool = False, progress: bool = True) -> Dict[str, int]:
    """Cache α for every frame of `names` (default: train + test of the tree) under `root`.

    `model` is an :class:`edtalk.model.EDTalk` (lip-pose or full); it runs in eval mode without
    autograd (its train/eval mode is restored afterwards).  Clips whose requested files all
    exist are skipped unless `overwrite`.  Returns {"written": n, "skipped": m}.
    """
    from ..data.store import open_frames

    root = Path(root)
    parts = _check_parts(parts, model)
    if int(batch_size) < 1:
        raise InputError("batch size must be at least 1")
    names = list(layout.list_clips(root) if names is None else names)
    todo = [n for n in names if overwrite or not all(motion_path(root, n, p).is_file() for p in parts)]
    store = open_frames(root)
    was_training = model.training
    model.eval()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="extract motion", unit="clip", dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for name in todo:
                for part, array in _clip_weights(model, store, name, parts, int(batch_size)).items():
                    _save_atomic(motion_path(root, name, part), array)
                if bar is not None:
                    bar.update(1)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return {"written": len(todo), "skipped": len(names) - len(todo)}


def load_generator(checkpoint, device="cpu"):
    """An EDTalk generator (eval, frozen) from an official `.pt`, a saved model folder or a run."""
    from ..model import EDTalk

    return EDTalk.from_pretrained(checkpoint, device).requires_grad_(False)


# ----------------------------------------------------------------------------- presets


def _preset_clips(root: Path, split: str, levels: Optional[Sequence[int]]) -> Dict[str, List[str]]:
    """emotion → the split's MEAD clips it averages (neutral: every neutral clip, any level)."""
    by_emotion: Dict[str, List[str]] = {}
    skipped = set()
    for name in layout.read_split(root, split):
        if layout.name_kind(name) != "mead":
            raise InputError(f"presets need a MEAD-style tree; {name!r} is not a MEAD name")
        parsed = layout.parse_mead_name(name)
        if parsed.emotion != "neutral" and levels is not None and parsed.level not in levels:
            skipped.add(parsed.emotion)
            continue
        by_emotion.setdefault(parsed.emotion, []).append(name)
    if "neutral" not in by_emotion:
        raise InputError(f"{root}/{split}.json has no neutral clips: presets are scaled from neutral")
    missing = sorted(skipped - set(by_emotion))
    if missing:
        import warnings

        warnings.warn(f"no clips of level {'/'.join(map(str, levels))} for {', '.join(missing)}: no preset for "
                      "them (use --levels all)")
    return by_emotion


def compute_presets(root, split: str = "train", levels: Optional[Sequence[int]] = (3,)) -> dict:
    """Per emotion, the mean α_e over all frames of its clips (docs/design.md §8.8); from the motion cache.

    `levels` picks the emotional clips' intensity levels (None = all); neutral always uses every
    neutral clip.  Returns {"presets": {emotion: float32 [10]}, "per_level": {emotion: {level:
    [10]}}, "frames": {emotion: n}, "clips": {emotion: n}}.
    """
    root = Path(root)
    presets, per_level, frames, clips = {}, {}, {}, {}
    for emotion, names in sorted(_preset_clips(root, split, levels).items()):
        arrays = {n: load_motion(root, n, "exp").astype(np.float64) for n in names}
        stacked = np.concatenate(list(arrays.values()))
        presets[emotion] = stacked.mean(0).astype(np.float32)
        frames[emotion], clips[emotion] = int(len(stacked)), len(names)
        levels_of = {}
        for n, a in arrays.items():
            levels_of.setdefault(layout.parse_mead_name(n).level, []).append(a)
        per_level[emotion] = {lv: np.concatenate(v).mean(0).astype(np.float32) for lv, v in sorted(levels_of.items())}
    return {"presets": presets, "per_level": per_level, "frames": frames, "clips": clips}


def write_presets(result: dict, out, source: Optional[dict] = None) -> List[Path]:
    """`<emotion>.npy` (1,10) float32 per emotion (the official file format) and presets.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for emotion, vec in result["presets"].items():
        path = out / f"{emotion}.npy"
        _save_atomic(path, np.asarray(vec, dtype=np.float32).reshape(1, -1))
        written.append(path)
    info = {
        "presets": {e: [float(x) for x in v] for e, v in result["presets"].items()},
        "per_level": {e: {str(lv): [float(x) for x in v] for lv, v in d.items()} for e, d in result["per_level"].items()},
        "frames": result["frames"], "clips": result["clips"], **(source or {}),
    }
    path = out / PRESETS_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, path)
    return written + [path]


# ----------------------------------------------------------------------------- commands (edtalk.cli parses)


def _parse_parts(text: str) -> List[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def _split_names(root: Path, split: str) -> List[str]:
    if split == "all":
        return layout.list_clips(root)
    if split not in layout.SPLITS:
        raise InputError(f"--split must be train, test or all, got {split!r}")
    return layout.read_split(root, split)


def run_extract_motion(checkpoint, data, parts: Optional[str] = None, split: str = "all", batch_size: int = 32,
                       overwrite: bool = False, device: str = "auto", progress: bool = True) -> str:
    """`edtalk extract-motion`: cache α of a tree's clips; returns the summary line."""
    from ..runtime import resolve_device

    model = load_generator(checkpoint, resolve_device(device))
    default = ("mouth", "pose", "exp") if model.has_expression else ("mouth", "pose")
    parts = _parse_parts(parts) if parts else list(default)
    root = Path(data)
    done = extract_motion(model, root, _split_names(root, split), parts, batch_size, overwrite, progress=progress)
    dirs = ", ".join(str(root / PART_DIRS[p]) for p in parts)
    return f"extracted {'/'.join(parts)} weights of {done['written']} clips ({done['skipped']} already cached) into {dirs}"


def parse_levels(text: str) -> Optional[List[int]]:
    """`all` → None (every level), else a list of intensity levels such as `3` or `2,3`."""
    if str(text).strip().lower() == "all":
        return None
    try:
        levels = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--levels must be 'all' or a list of 1,2,3, got {text!r}") from None
    if not levels or any(lv not in layout.LEVELS for lv in levels):
        raise InputError(f"--levels must be 'all' or a list of 1,2,3, got {text!r}")
    return levels


def run_make_presets(checkpoint, data, out, levels: str = "3", split: str = "train", batch_size: int = 32,
                     overwrite: bool = False, device: str = "auto", progress: bool = True) -> str:
    """`edtalk make-presets`: α_e cache of the clips averaged, then written; returns the summary line."""
    from ..runtime import resolve_device

    root, chosen = Path(data), parse_levels(levels)
    names = [n for clips in _preset_clips(root, split, chosen).values() for n in clips]
    model = load_generator(checkpoint, resolve_device(device))
    extract_motion(model, root, names, ("exp",), batch_size, overwrite, progress=progress)
    result = compute_presets(root, split, chosen)
    write_presets(result, out, {"checkpoint": str(checkpoint), "data": str(root), "split": split,
                                "levels": chosen or "all"})
    return (f"wrote {len(result['presets'])} presets ({', '.join(result['presets'])}) to {out}; "
            f"use them with `edtalk generate --exp <name> --presets {out}`")
