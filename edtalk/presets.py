"""The 8 official expression presets (docs/design.md §4.4), intensity scaling and blends.

Each preset is the expression weight vector α_e ∈ R^10 the official release ships as
`predefined_exp_weights/<name>.npy`. Intensity s interpolates from neutral:
α = α_neutral + s·(α_emo − α_neutral), so s = 1 is the preset and s = 0 is neutral.

A folder of `<name>.npy` files (the official format, e.g. from `edtalk make-presets` for a model
you trained) replaces the built-in table. It needs `neutral.npy` (intensities scale from neutral).
Which table a run uses, first match wins:

1. the run's own `--presets DIR` (`GenerateOptions.presets`), or `use_preset_dir(DIR)` for the process;
2. the `presets/` folder beside the generator the run loads (a model folder such as
   `checkpoints/synthtalk` carries the presets of its own expression space);
3. the environment variable EDTALK_PRESETS;
4. the official table below.

`generate()` makes its choice with `presets_from(folder)`, which holds for that call (and thread) only.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .errors import InputError

PRESETS: Dict[str, Tuple[float, ...]] = {
    "angry": (-1.2310930490, 3.7908980846, -1.5007566214, 0.1226600409, -4.0071396828, 3.6911277771,
              0.6375026703, -0.0693703741, -0.4284539223, -1.2294186354),
    "contempt": (-0.3130641282, -2.6425628662, 1.5148757696, -4.8300142288, -4.3765354156, 1.0125852823,
                 -0.2634939849, -3.1123037338, -1.9634505510, 0.0712180734),
    "disgusted": (-0.4504095614, 1.3312431574, -0.0069811493, -1.6342964172, -4.1862101555, -0.2655317485,
                  -1.0893082619, 0.3674257994, 2.6649870872, -1.5405502319),
    "fear": (-2.4976139069, -2.7251939774, -2.1140222549, -3.3182277679, -5.0823082924, 1.3214045763,
             2.8957922459, -1.2960464954, 1.8680826426, 1.1540186405),
    "happy": (2.2530171871, -2.5689573288, -1.7016919851, -3.2732691765, 0.8802838922, 5.2869791985,
              1.0596235991, -1.4815726280, 1.3691145182, -1.7866109610),
    "neutral": (-3.1408340931, 0.9674415588, 2.4432940483, -0.5256711841, -4.1754770279, 2.7529573441,
                2.2682709694, 0.0721661747, 0.9215131402, -2.1262929440),
    "sad": (-4.1286287308, 1.1723645926, -0.0737564266, -3.7019422054, -4.3707599640, 1.1113555431,
            -1.7180948257, 1.5923467875, -0.0017645061, -2.3149311543),
    "surprised": (-2.2686994076, -4.2752609253, -0.1265704036, -2.8910832405, -2.7508702278, 1.5720245838,
                  4.2018322945, -1.1848171949, 2.2110018730, 0.4526675940),
}
EMOTIONS: List[str] = sorted(PRESETS)
PRESETS_ENV = "EDTALK_PRESETS"
MODEL_PRESETS_DIR = "presets"  # the preset folder inside a model folder
OFFICIAL = "the official presets"
_preset_dir: Optional[Path] = None
_UNSET = object()
# The table of the generate() call running in this context: a folder, None (the official table) or unset;
# and that folder's table, read once for the call.
_call_dir: ContextVar[object] = ContextVar("edtalk_preset_dir", default=_UNSET)
_call_table: ContextVar[Optional[Dict[str, np.ndarray]]] = ContextVar("edtalk_preset_table", default=None)


def use_preset_dir(path) -> None:
    """Take presets from a folder of `<name>.npy` files from now on (None: back to $EDTALK_PRESETS
    or the built-in table).  The folder is checked here, so a bad one fails before any work."""
    global _preset_dir
    _preset_dir = None if path is None else Path(path)
    if _preset_dir is not None:
        load_preset_dir(_preset_dir)


def load_preset_dir(path) -> Dict[str, np.ndarray]:
    """{name: α_e [10] float32} of the `<name>.npy` files (shape [10] or [1,10]) in a folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"preset folder not found: {folder}")
    table = {}
    for file in sorted(folder.glob("*.npy")):
        arr = load_weights_file(file)
        if len(arr) != 1:
            raise InputError(f"preset {file} must hold one vector ([10] or [1,10]), got {len(arr)} rows")
        table[file.stem.lower()] = arr[0]
    if "neutral" not in table:
        raise InputError(f"preset folder {folder} has no neutral.npy (intensities are scaled from neutral)")
    return table


def model_preset_dir(generator) -> Optional[Path]:
    """The `presets/` folder that belongs to a generator checkpoint (a file or a saved-model folder):
    inside a saved-model folder, else beside the generator; None when there is none."""
    if generator is None:
        return None
    path = Path(generator)
    for folder in ((path / MODEL_PRESETS_DIR) if path.is_dir() else None, path.parent / MODEL_PRESETS_DIR):
        if folder is not None and folder.is_dir():
            return folder
    return None


def _environment_dir() -> Optional[Path]:
    return Path(os.environ[PRESETS_ENV]) if os.environ.get(PRESETS_ENV) else None


def choose_preset_dir(explicit=None, generator=None) -> Optional[Path]:
    """The preset folder of a run (None: the official table): `explicit` (--presets), else the process's
    `use_preset_dir`, else the generator's own presets/, else $EDTALK_PRESETS."""
    for folder in (explicit, _preset_dir, model_preset_dir(generator), _environment_dir()):
        if folder is not None:
            return Path(folder)
    return None


@contextmanager
def presets_from(folder, table: Optional[Dict[str, np.ndarray]] = None) -> Iterator[Optional[Path]]:
    """Use the presets of `folder` (None: the official table) inside the block, in this context only
    (other threads and later calls keep their own). The folder is read once, here (a bad one fails
    before any work), unless its `table` (`load_preset_dir(folder)`) is given already."""
    folder = None if folder is None else Path(folder)
    if folder is not None and table is None:
        table = load_preset_dir(folder)
    token, table_token = _call_dir.set(folder), _call_table.set(table if folder is not None else None)
    try:
        yield folder
    finally:
        _call_table.reset(table_token)
        _call_dir.reset(token)


def preset_dir_in_use() -> Optional[Path]:
    """The folder the preset functions read now (None: the official table)."""
    chosen = _call_dir.get()
    if chosen is not _UNSET:
        return chosen
    return _preset_dir or _environment_dir()


def describe_preset_dir(folder) -> str:
    return OFFICIAL if folder is None else str(folder)


def active_presets() -> Dict[str, Tuple[float, ...]]:
    """The preset table in use: this call's (`presets_from`), else the process's folder, else
    $EDTALK_PRESETS, else the official presets."""
    if _call_dir.get() is not _UNSET and _call_table.get() is not None:
        return _call_table.get()
    folder = preset_dir_in_use()
    return load_preset_dir(folder) if folder is not None else PRESETS


def preset_names() -> List[str]:
    return sorted(active_presets())


def preset(name: str, intensity: float = 1.0) -> np.ndarray:
    """α_e [10] float32 for a preset at an intensity (1 = the official preset, 0 = neutral)."""
    key = name.strip().lower()
    table = active_presets()
    if key not in table:
        raise InputError(f"unknown expression preset {name!r}; choose from {', '.join(sorted(table))}")
    neutral = np.asarray(table["neutral"], dtype=np.float64)
    emo = np.asarray(table[key], dtype=np.float64)
    return (neutral + float(intensity) * (emo - neutral)).astype(np.float32)


def blend(weights: Dict[str, float], intensity: float = 1.0) -> np.ndarray:
    """Convex combination of presets, e.g. {'happy': 0.7, 'surprised': 0.3} (weights renormalised)."""
    total = sum(weights.values())
    if not weights or total <= 0 or any(w < 0 for w in weights.values()):
        raise InputError("preset blend weights must be non-negative and sum to a positive number")
    return sum(w / total * preset(n, intensity) for n, w in weights.items()).astype(np.float32)


def is_preset_spec(text: str) -> bool:
    """True for 'happy', 'happy:0.7+sad:0.3' or 'happy+sad' (names must be known presets)."""
    try:
        parse_preset_spec(text)
        return True
    except InputError:
        return False


def parse_preset_spec(text: str) -> Dict[str, float]:
    """'happy' → {'happy': 1}; 'happy:0.7+surprised:0.3' → a blend; 'happy+sad' → equal parts."""
    parts = [p for p in re.split(r"[+,]", text.strip().lower()) if p]
    if not parts:
        raise InputError("empty expression preset")
    names = preset_names()
    out: Dict[str, float] = {}
    for part in parts:
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in names:
            raise InputError(f"unknown expression preset {name!r}; choose from {', '.join(names)}")
        try:
            out[name] = out.get(name, 0.0) + (float(weight) if weight else 1.0)
        except ValueError:
            raise InputError(f"bad blend weight in {part!r} (expected name:number)") from None
    return out


def expression_from_spec(text: str, intensity: float = 1.0) -> np.ndarray:
    weights = parse_preset_spec(text)
    return blend(weights, intensity) if len(weights) > 1 else preset(next(iter(weights)), intensity)


def load_weights_file(path) -> np.ndarray:
    """An α_e `.npy` file ([10] or [1,10], or per-frame [T,10]) as float32 [T,10]."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read expression weights {path}: {exc}") from None
    arr = np.asarray(arr, dtype=np.float32).reshape(-1, arr.shape[-1]) if arr.ndim else arr
    if arr.ndim != 2 or arr.shape[-1] != 10 or len(arr) == 0:
        raise InputError(f"expression weights {path} must have shape [10], [1,10] or [T,10], got {np.shape(arr)}")
    return arr
