"""Helpers for tests and benchmarks: the official-parity reference set and random weights.

Random-weight models exist for smoke tests and benchmarks only; they are never results.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

import torch

PARITY_ENV = "EDTALK_PARITY_DIR"
REQUIRE_ENV = "EDTALK_REQUIRE_PARITY"


def find_parity_dir(start: Optional[Path] = None) -> Optional[Path]:
    """`$EDTALK_PARITY_DIR`, else `../shared/reference/official_parity` beside the repository."""
    env = os.environ.get(PARITY_ENV)
    if env:
        return Path(env) if (Path(env) / "reference.pt").is_file() else None
    here = Path(start or __file__).resolve()
    for parent in here.parents:
        cand = parent / "shared" / "reference" / "official_parity"
        if (cand / "reference.pt").is_file():
            return cand
    return None


def find_reference(name: str, start: Optional[Path] = None) -> Optional[Path]:
    """`<shared>/reference/<name>` (a file or folder of the reference set), or None: beside
    `$EDTALK_PARITY_DIR` when it is set, else in the `shared/reference` above the repository."""
    env = os.environ.get(PARITY_ENV)
    parents = [Path(env).resolve().parent] if env else [
        p / "shared" / "reference" for p in Path(start or __file__).resolve().parents]
    return next((p / name for p in parents if (p / name).exists()), None)


def reference_required() -> bool:
    """In CI (`$CI` set) or with EDTALK_REQUIRE_PARITY=1 missing reference files are failures."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get(REQUIRE_ENV) == "1"


def skip_unless_required(reason: str) -> None:
    """For tests whose reference files are missing: pytest.skip(reason), or pytest.fail where
    they are required (CI), so a missing file never passes CI silently."""
    import pytest

    if reference_required():
        pytest.fail(f"{reason}; reference files are required here ($CI or {REQUIRE_ENV}=1)")
    pytest.skip(reason)


def state_dict_from_recipe(recipe_entries) -> Dict[str, torch.Tensor]:
    """Rebuild an official-format state dict from a `weights_recipe.json` model entry list."""
    out = {}
    for e in recipe_entries:
        shape, init = tuple(e["shape"]), e["init"]
        g = torch.Generator().manual_seed(int(e["seed"]))
        if init == "normal":
            t = torch.randn(shape, generator=g, dtype=torch.float32) * e["std"] + e["mean"]
        elif init == "exp_normal":
            t = torch.exp(torch.randn(shape, generator=g, dtype=torch.float32) * e["std"])
        elif init == "zeros":
            t = torch.zeros(shape, dtype=getattr(torch, e["dtype"]))
        elif init == "value":
            t = torch.tensor(e["value"], dtype=getattr(torch, e["dtype"]))
        else:
            raise ValueError(f"unknown init rule {init!r}")
        out[e["key"]] = t
    return out


def load_recipe(parity_dir: Path, model: str) -> Dict[str, torch.Tensor]:
    recipe = json.loads((Path(parity_dir) / "weights_recipe.json").read_text())
    return state_dict_from_recipe(recipe[model])


def _init_rule(key: str, tensor: torch.Tensor, bias_std: float):
    """(mean, std) of the parity recipe's rules: equalised layers N(0,1); plain torch layers
    1/√fan_in; small flow heads, so random models stay well-behaved."""
    plain = ".fineadainresblock." in key or key.startswith(("audio_encoder.", "mapping.")) or ".mlp_" in key
    if key.endswith("modulation.bias"):
        return 1.0, 0.1
    if ".to_flows." in key:
        return 0.0, 0.01 if key.endswith("bias") else 0.05
    if key.endswith("bias"):
        return 0.0, (0.02 if plain else bias_std)
    if key.endswith("conv_block.1.weight"):  # BatchNorm scale
        return 1.0, 0.1
    if plain and tensor.dim() >= 2:
        return 0.0, 1.0 / float(tensor[0].numel()) ** 0.5
    return 0.0, 1.0


def official_like_state_dict(model: torch.nn.Module, seed: int = 0, bias_std: float = 0.1) -> Dict[str, torch.Tensor]:
    """Deterministic synthetic weights following the parity recipe's init rules (not a trained model)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("kernel") or not v.is_floating_point():
            sd[k] = v.clone()
        elif "running_var" in k:
            sd[k] = torch.exp(torch.randn(v.shape, generator=g) * 0.1)
        elif "running_mean" in k:
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
        else:
            mean, std = _init_rule(k, v, bias_std)
            sd[k] = torch.randn(v.shape, generator=g) * std + mean
    return sd


def write_tiny_checkpoints(directory, seed: int = 0) -> Dict[str, Path]:
    """Random-weight tiny models (64×64) in the official file layout: smoke tests only, never results."""
    import argparse

    from .config import Audio2LipConfig, EDTalkConfig
    from .model import EDTalk
    from .networks.audio2lip import Audio2Lip

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full = EDTalk(EDTalkConfig.tiny())
    full_sd = official_like_state_dict(full, seed=seed)
    lip_pose = EDTalk(EDTalkConfig.tiny(exp_dim=0))
    # Same mouth/pose weights as the full model, like a stage-2 model grown from stage 1.
    lip_pose_sd = {k: full_sd[k] for k in lip_pose.state_dict()}
    a2l = Audio2Lip(Audio2LipConfig.tiny())
    a2l_sd = official_like_state_dict(a2l, seed=seed + 1, bias_std=0.05)
    args = argparse.Namespace(note="random tiny weights for tests")
    paths = {
        "EDTalk.pt": {"gen": full_sd, "args": args},
        "EDTalk_lip_pose.pt": {"gen": lip_pose_sd, "args": args},
        "Audio2Lip.pt": {"audio2lip": a2l_sd, "args": args},
    }
    out = {}
    for name, payload in paths.items():
        torch.save(payload, directory / name)
        out[name] = directory / name
    return out
