"""Checkpoint loading and saving.

Official `.pt` files are pickles. They are loaded with `torch.load(weights_only=True)`, which
only rebuilds tensors and plain containers, with `argparse.Namespace` (and path objects) allowed
for the `'args'` entry that training checkpoints carry. Nothing else is unpickled: a file whose
pickle references any other callable is refused with one clear error, never loaded fully.

Torch versions: the allowlist is scoped with `torch.serialization.safe_globals` (torch >= 2.5),
else registered with `add_safe_globals` (2.4); torch 2.1–2.3 have no allowlist API, so a file that
weights-only loading refuses is read by a restricted unpickler (tensors, containers and the
allowlisted classes only) that drops `'args'` (docs/design.md §4.1 step 2). The package's floor is torch 2.3
(training's `torch.amp.GradScaler(device)`); this loader alone works from 2.1.

Our own format is a folder with `model.safetensors` + `config.json` (`model_type` and the
model's init arguments; :mod:`edtalk.modeling` reads and writes it).  :func:`locate_model` is the
one place that decides where a model is, given a `.pt` file, a saved folder, a folder holding
models (a checkpoint directory) or a training run / its `export/`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import pickle
import re
import types
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch

from .errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SAFE_GLOBALS = [argparse.Namespace, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath,
                pathlib.PureWindowsPath]

# Known top-level entries of official files: generator weights, Audio2Lip weights, training extras.
GENERATOR_KEY, AUDIO2LIP_KEY = "gen", "audio2lip"


def plain_torch_load(path: Union[str, os.PathLike]):
    """The weights-only pickle in `path`, or None when it is not one (a TorchScript archive or a
    torch.export program, which their own loaders read next)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return None


def safe_torch_load(path: Union[str, os.PathLike]) -> dict:
    """torch.load without arbitrary code execution; CheckpointError with one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (see checkpoints/README.md for where to get it)")
    try:
        return _load_weights_only(path)
    except pickle.UnpicklingError as exc:
        culprit = _unsafe_global(str(exc))
        if culprit is None:
            raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint (corrupt or another format)") from None
        raise CheckpointError(
            f"refusing to load {path}: its pickle references {culprit}, which is not plain data "
            "(loading it could run arbitrary code). Only tensor checkpoints are accepted."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {msg}") from None


def _load_weights_only(path: Path):
    """torch.load(weights_only=True) with SAFE_GLOBALS allowed, on every torch from 2.1."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):  # torch >= 2.5: allowed for this call only
        with serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    if hasattr(serialization, "add_safe_globals"):  # torch 2.4: process-wide (harmless classes)
        serialization.add_safe_globals(SAFE_GLOBALS)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    try:  # torch 2.1–2.3: no allowlist, so `'args'` makes weights-only loading refuse the file
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return _restricted_load(path)


# What the restricted unpickler may build besides plain data: tensors and the safe classes.
_TENSOR_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor"),
                   ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                   ("torch._utils", "_rebuild_parameter_with_state")}


def _allowed_global(module: str, name: str):
    """The object a pickle may reference as `module.name`, or None when it is not allowed."""
    for cls in SAFE_GLOBALS:
        if name == cls.__name__ and module in (cls.__module__, "pathlib", "argparse"):
            return cls
    if (module, name) in _TENSOR_GLOBALS:
        return getattr(importlib.import_module(module), name, None)
    if module == "torch":  # storage classes and dtypes name tensors' element types
        obj = getattr(torch, name, None)
        if (isinstance(obj, type) and name.endswith("Storage")) or isinstance(obj, torch.dtype):
            return obj
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:  # worded like torch's refusal, so _unsafe_global names the culprit
            raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name} is not allowed")
        return obj


_RESTRICTED_PICKLE = types.ModuleType("edtalk_restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()


def _restricted_load(path: Path):
    """docs/design.md §4.1 step 2: the restricted unpickler; the training `'args'` entry is dropped."""
    data = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
    if isinstance(data, dict):
        data.pop("args", None)
    return data


def _unsafe_global(message: str) -> Optional[str]:
    """The non-allowlisted global named in torch's weights-only error, or None for other errors."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if match:
        return repr(match.group(1).rstrip("."))
    if "global" in message.lower():
        return "an object that is not a tensor"
    return None


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_state_dict(path_or_state_dict, key: str) -> Dict[str, torch.Tensor]:
    """The state dict stored under `key` ('gen' / 'audio2lip'), a bare state dict, or safetensors."""
    source = path_or_state_dict
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            path = path / WEIGHTS_NAME
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            if not path.is_file():
                raise CheckpointError(f"checkpoint not found: {path}")
            source = load_file(str(path))
        else:
            source = safe_torch_load(path)
    if not isinstance(source, dict):
        raise CheckpointError(f"checkpoint holds a {type(source).__name__}, expected a dict of tensors")
    # Fall back to the other known entry so the kind check can say which flag the file belongs to.
    entry = next((k for k in (key, GENERATOR_KEY, AUDIO2LIP_KEY) if isinstance(source.get(k), dict)), None)
    if entry is not None:
        source = source[entry]
    elif not _is_state_dict(source):
        found = ", ".join(sorted(k for k in source if isinstance(k, str))[:6])
        raise CheckpointError(f"checkpoint has no '{key}' weights (top-level keys: {found})")
    return strip_prefix(dict(source))


def describe_kind(state_dict: Dict[str, torch.Tensor]) -> str:
    """'edtalk', 'lip_pose', 'audio2lip', 'lia', 'discriminator' or 'unknown'."""
    keys = set(state_dict)
    if any(k.startswith("audio_encoder.") for k in keys) and "mapping.weight" in keys:
        return "audio2lip"
    if "direction_lipnonlip.weight" in keys:
        return "edtalk" if "direction_exp.weight" in keys else "lip_pose"
    if "dec.direction.weight" in keys:
        return "lia"
    if "final_linear.0.weight" in keys:
        return "discriminator"
    return "unknown"


WRONG_KIND_HINTS = {
    "audio2lip": "this is an Audio2Lip checkpoint; pass it with --audio2lip-checkpoint",
    "edtalk": "this is an EDTalk generator checkpoint; pass it with --checkpoint",
    "lip_pose": "this is an EDTalk lip-pose generator checkpoint; pass it with --checkpoint",
    "lia": "this is a LIA checkpoint (training initialisation), not an EDTalk model",
    "discriminator": "this is a discriminator, not a generator",
    "unknown": "its keys match no EDTalk model",
}


def check_kind(state_dict, expected: tuple, where: str = "checkpoint") -> str:
    kind = describe_kind(state_dict)
    if kind not in expected:
        raise CheckpointError(f"wrong kind of {where}: {WRONG_KIND_HINTS[kind]}")
    return kind


def load_state_dict_strict(module: torch.nn.Module, state_dict, name: str) -> None:
    """load_state_dict with a readable summary of missing/unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} with wrong shape (e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{name} weights do not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)




# ---------------------------------------------------------------------------------------------
# Our format: a folder with model.safetensors + config.json ({"model_type": ..., **init arguments}).

def is_saved_folder(path) -> bool:
    """A folder with a `config.json` (a saved model, or one being written)."""
    return (Path(path) / CONFIG_NAME).is_file()


def _read_config(directory) -> Optional[dict]:
    try:
        data = json.loads((Path(directory) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _config_model_type(data: dict) -> str:
    # Folders saved before `model_type` was written hold the generator.
    return str(data.get("model_type", "edtalk"))


def saved_model_type(directory) -> Optional[str]:
    """The `model_type` of a saved model folder (config + weights), or None when `directory` is
    not one or its config is unreadable."""
    directory = Path(directory)
    if not (directory / WEIGHTS_NAME).is_file():
        return None
    data = _read_config(directory)
    return _config_model_type(data) if data is not None else None


def read_saved_folder(directory, expected: str, label: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """(config.json data, tensors) of a saved `expected` model; one CheckpointError otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not is_saved_folder(directory) or not weights.is_file():
        raise CheckpointError(f"{directory} is not a saved {label} (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    data = _read_config(directory)
    if data is None:
        raise CheckpointError(f"{directory / CONFIG_NAME} is not a JSON object")
    model_type = _config_model_type(data)
    if model_type != expected:
        raise CheckpointError(f"{directory} holds a {model_type} model, expected {expected}")
    try:
        return data, load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {weights}: {exc}") from None


def write_saved_folder(directory, model_type: str, arguments: dict, tensors: Dict[str, torch.Tensor]) -> Path:
    """Write `model.safetensors` and `config.json` (`model_type` + JSON `arguments`), each atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "model_type": model_type})
    os.replace(tmp, directory / WEIGHTS_NAME)
    tmp = directory / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps({"model_type": model_type, **arguments}, indent=2) + "\n")
    os.replace(tmp, directory / CONFIG_NAME)
    return directory


# ---------------------------------------------------------------------------------------------
# Where a model is: the one resolver for ".pt, saved folder, checkpoint folder, run or its export/".

RUN_EXPORT = "export"
_STEP_FILE = re.compile(r"^\d+\.pt$")  # a training run's `export/<step>.pt` (official training format)


@dataclass(frozen=True)
class ModelLocation:
    path: Path
    official: bool  # an official-format `.pt` file; else a saved folder


def find_model(path, model_type: str, names: Iterable[str] = (), prefer_official: bool = False,
               named_only: bool = False) -> Optional[ModelLocation]:
    """Where the `model_type` model given as `path` is, or None when there is none.

    1. `path` itself: a file is an official-format checkpoint, a folder with config.json a saved model;
    2. else in `path`, then in `path/export/` (a training run): the first of `names` present (a
       file such as `EDTalk.pt` or a saved folder such as `EDTalk/`); else the one saved folder
       whose config names `model_type` or the run's newest `<step>.pt`, the folder first unless
       `prefer_official` (a step file also holds the discriminator).
    `named_only`: look for `names` only (step 2's first half), as in a checkpoint folder.
    """
    p = Path(str(path))
    if p.is_file() and not named_only:
        return ModelLocation(p, True)
    if not p.is_dir():
        return None
    if is_saved_folder(p) and not named_only:
        return ModelLocation(p, False)
    for base in (p, p / RUN_EXPORT):
        if not base.is_dir():
            continue
        for name in names:
            candidate = base / name
            if candidate.is_file() or is_saved_folder(candidate):
                return ModelLocation(candidate, candidate.is_file())
        if named_only:
            continue
        found = _typed_folders(base, model_type)[:1] + _newest_step_file(base)
        if found:
            return sorted(found, key=lambda loc: loc.official != prefer_official)[0]
    return None


def _typed_folders(base: Path, model_type: str) -> List[ModelLocation]:
    folders = [d for d in sorted(base.iterdir()) if d.is_dir() and is_saved_folder(d)
               and _config_model_type(_read_config(d) or {}) == model_type]
    if len(folders) > 1:
        raise CheckpointError(f"{base} holds several {model_type} models ({', '.join(d.name for d in folders)}): "
                              "pass the one you mean")
    return [ModelLocation(d, False) for d in folders]


def _newest_step_file(base: Path) -> List[ModelLocation]:
    steps = sorted(f for f in base.iterdir() if f.is_file() and _STEP_FILE.match(f.name))
    return [ModelLocation(steps[-1], True)] if steps else []


def locate_model(path, model_type: str, names: Iterable[str] = (), prefer_official: bool = False,
                 label: str = "model", hint: str = "") -> ModelLocation:
    """:func:`find_model`, with one CheckpointError (ending in `hint`) when there is no model."""
    found = find_model(path, model_type, names, prefer_official)
    if found is not None:
        return found
    p = Path(str(path))
    if not p.exists():
        raise CheckpointError(f"{label} not found: {p}{hint}")
    raise CheckpointError(f"{p} is not a saved {label} and holds none (expected a .pt file, a folder with "
                          f"{CONFIG_NAME} + {WEIGHTS_NAME}, or a training run with {RUN_EXPORT}/){hint}")


def saved_config(directory) -> Optional[dict]:
    """The config fields of a saved model folder, from either config.json schema (today's
    `{"model_type", "config": {...}}` or the older flat one); None when there is no readable config."""
    data = _read_config(directory) if is_saved_folder(directory) else None
    if data is None:
        return None
    config = data.get("config", {k: v for k, v in data.items() if k != "model_type"})
    return config if isinstance(config, dict) else None
