"""Initial weights for the generator stages: scratch, LIA `vox.pt` (docs/design.md §4.3), released/exported
official-format `.pt` files, or our saved model folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from ..checkpoints import GENERATOR_KEY, check_kind, load_state_dict_strict, read_state_dict, safe_torch_load
from ..config import EDTalkConfig
from ..errors import EDTalkError
from ..model import EDTalk, config_from_state_dict

LIA_SHARED_MLP = 4  # enc.fc.0–3 become fc.0–3; enc.fc.4 (the 20-d LIA head) is dropped


def lia_config(lia_sd: Dict[str, torch.Tensor], mouth_dim: int = 20, pose_dim: int = 6) -> EDTalkConfig:
    """The lip-pose architecture matching a LIA generator's encoder/decoder sizes."""
    latent = int(lia_sd["dec.direction.weight"].shape[0])
    probe = {k: v for k, v in lia_sd.items() if k.startswith("enc.net_app.")}
    probe["direction_lipnonlip.weight"] = torch.empty(latent, mouth_dim + pose_dim)
    probe["lip_fc.2.weight"] = torch.empty(mouth_dim, latent)
    probe["pose_fc.2.weight"] = torch.empty(pose_dim, latent)
    for i in range(LIA_SHARED_MLP):
        probe[f"fc.{i}.weight"] = lia_sd[f"enc.fc.{i}.weight"]
    return config_from_state_dict(probe)


def convert_lia(lia_sd: Dict[str, torch.Tensor], seed: int = 0) -> Tuple[EDTalk, Dict[str, torch.Tensor]]:
    """LIA generator → lip-pose EDTalk (§4.3).

    Copies `enc.net_app.*` and `dec.*` (except `dec.direction.weight`), maps `enc.fc.{0..3}` →
    `fc.{0..3}`, drops `enc.fc.4`; W26 ~ N(0,1) and fresh `lip_fc`/`pose_fc` (seeded).
    Returns the model and the dict of tensors that came from LIA (for checks).
    """
    if "dec.direction.weight" not in lia_sd:
        raise EDTalkError("not a LIA generator state dict (no dec.direction.weight)")
    torch.manual_seed(seed)
    model = EDTalk(lia_config(lia_sd))
    own = model.state_dict()
    copied: Dict[str, torch.Tensor] = {}
    for key, value in lia_sd.items():
        if key == "dec.direction.weight" or key.startswith("enc.fc.4."):
            continue
        if key.startswith("enc.fc."):
            target = "fc." + key[len("enc.fc."):]
        elif key.startswith("enc.net_app.") or key.startswith("dec."):
            target = key
        else:
            continue
        if target not in own:
            raise EDTalkError(f"LIA key {key} has no place in the lip-pose model")
        if tuple(own[target].shape) != tuple(value.shape):
            raise EDTalkError(f"LIA key {key}: shape {tuple(value.shape)} != {tuple(own[target].shape)}")
        copied[target] = value
    missing = [k for k in own if k not in copied and not k.startswith(("direction_lipnonlip", "lip_fc", "pose_fc"))]
    if missing:
        raise EDTalkError(f"LIA state dict lacks {len(missing)} entries the model needs (e.g. {missing[0]})")
    own.update(copied)
    model.load_state_dict(own)
    return model, copied


def read_discriminator(path) -> Optional[Dict[str, torch.Tensor]]:
    """The 'dis' entry of an official-format training checkpoint, if it has one."""
    if Path(path).is_dir() or str(path).endswith(".safetensors"):
        return None
    obj = safe_torch_load(path)
    dis = obj.get("dis") if isinstance(obj, dict) else None
    return dict(dis) if isinstance(dis, dict) else None


def lip_pose_subset(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An EDTalk.pt generator reduced to the lip-pose keys (no EEM, W10 or exp_fc)."""
    drop = ("dec.fineadainresblock.", "direction_exp.", "exp_fc.")
    return {k: v for k, v in sd.items() if not k.startswith(drop)}


def identity_flows(model: EDTalk) -> EDTalk:
    """Zero every ToFlow conv weight, so a fresh decoder starts by warping the source features in
    place (flow 0, mask ½) instead of by random flows: it reconstructs the source from step 0 and
    motion has to explain only the differences.  Not in the official training (LIA starts from
    random flows and trains for days); a from-scratch CPU run cannot afford that."""
    with torch.no_grad():
        for to_flow in model.dec.to_flows:
            to_flow.conv.weight.zero_()
    return model


def init_generator(kind: str, path: Optional[str], config: EDTalkConfig, seed: int,
                   flow_init: str = "random") -> Tuple[EDTalk, Optional[dict]]:
    """(generator, discriminator state dict or None) for `model.init` = scratch | lia | official | pretrained;
    `flow_init` = random | identity applies to scratch only."""
    if flow_init not in ("random", "identity"):
        raise EDTalkError(f"model.flow_init must be random or identity, got {flow_init!r}")
    if kind == "scratch":
        torch.manual_seed(seed)
        model = EDTalk(config)
        return (identity_flows(model) if flow_init == "identity" else model), None
    if not path:
        raise EDTalkError(f"model.init={kind} needs model.init_path")
    if kind == "lia":
        obj = safe_torch_load(path)
        sd = obj.get(GENERATOR_KEY, obj) if isinstance(obj, dict) else obj
        model, _ = convert_lia(dict(sd), seed)
        dis = obj.get("dis") if isinstance(obj, dict) and isinstance(obj.get("dis"), dict) else None
        return model, dis
    if kind == "official":
        sd = read_state_dict(path, GENERATOR_KEY)
        found = check_kind(sd, ("edtalk", "lip_pose"), "generator checkpoint")
        if found == "edtalk" and not config.has_expression:
            sd = lip_pose_subset(sd)
        model = EDTalk(config_from_state_dict(sd))
        load_state_dict_strict(model, sd, "EDTalk generator")
        return model, read_discriminator(path)
    if kind == "pretrained":
        return EDTalk.from_pretrained(path).train(), None
    raise EDTalkError(f"model.init must be scratch, lia, official or pretrained, got {kind!r}")
