"""The motion cache of a layout tree (docs/design.md §8.8): per-clip motion weights α next to the
other side files (docs/design.md §7.3), written by `edtalk extract-motion` (:mod:`edtalk.train.motion`)
and read by the datasets that train on them::

    <root>/EDTalk_lip_feature/<name>.npy    α_m [T,20] float32  (lip-pose model or EDTalk)
    <root>/EDTalk_pose_feature/<name>.npy   α_p [T,6]  float32  (lip-pose model or EDTalk)
    <root>/EDTalk_exp_feature/<name>.npy    α_e [T,10] float32  (EDTalk only)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["PART_DIRS", "PART_DIMS", "motion_path", "load_motion", "save_array_atomic"]

PART_DIRS = {"mouth": "EDTalk_lip_feature", "pose": "EDTalk_pose_feature", "exp": "EDTalk_exp_feature"}
PART_DIMS = {"mouth": 20, "pose": 6, "exp": 10}


def motion_path(root, name: str, part: str) -> Path:
    """<root>/<EDTalk_*_feature>/<name>.npy of one clip and part."""
    if part not in PART_DIRS:
        raise InputError(f"unknown motion part {part!r}; choose from {', '.join(PART_DIRS)}")
    return Path(root) / PART_DIRS[part] / f"{name}.npy"


def load_motion(root, name: str, part: str) -> np.ndarray:
    """Cached α of one clip: mouth [T,20], pose [T,6] or exp [T,10] (float32)."""
    path = motion_path(root, name, part)
    if not path.is_file():
        model = "an EDTalk (full) model" if part == "exp" else "the lip-pose model (or EDTalk)"
        raise InputError(f"no cached {part} weights for {name} ({path}); run `edtalk extract-motion --checkpoint "
                         f"CKPT --data {root} --parts {part}` with {model}")
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] != PART_DIMS[part]:
        raise InputError(f"{path} has shape {arr.shape}, expected [T,{PART_DIMS[part]}]")
    return arr.astype(np.float32, copy=False)


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a per-process temporary file, so an interrupted write leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)
