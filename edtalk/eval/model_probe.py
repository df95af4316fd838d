"""Disentanglement of a real EDTalk model, measured on a SynthTalk tree (known factors).

For every frame of every clip, the model's navigation weights (mouth α_m, pose α_p, expression
α_e) are extracted from the frame alone, exactly as a driver frame is at inference; the
measures of `edtalk.eval.disentangle` then say how well each group predicts its own true factor
on held-out clips and how much it leaks the others.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ..data import layout
from ..data.synthtalk import load_factors
from ..pipelines.preprocess import frames_to_tensor
from ..video import read_video
from .disentangle import disentanglement_report

# Our weight groups → SynthTalk factor names.
GROUP_TO_FACTOR = {"mouth": "mouth", "pose": "pose", "exp": "expression"}


@torch.no_grad()
def extract_weights(model, root, names: Sequence[str], batch_size: int = 16, progress: bool = True) -> Dict[str, np.ndarray]:
    """Per-frame navigation weights of every clip, keyed by SynthTalk factor name."""
    param = next(model.parameters())
    out: Dict[str, list] = {}
    iterator = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="extracting weights", unit="clip", leave=False)
    for name in iterator:
        frames, _ = read_video(layout.clip_path(root, "video", name))
        images = frames_to_tensor(frames, model.config.size)
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(param.device, param.dtype)
            for group, w in model.motion_weights(batch).items():
                out.setdefault(GROUP_TO_FACTOR[group], []).append(w.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_model(model, root, split: Optional[str] = None, batch_size: int = 16, progress: bool = True,
                   **report_options) -> dict:
    """Probe report (own R², leak, score) of `model` on the clips of a SynthTalk tree."""
    root = Path(root)
    truth, groups, names = load_factors(root, split=split)
    pred = extract_weights(model, root, names, batch_size, progress)
    truth = {k: v for k, v in truth.items() if k in pred}
    return disentanglement_report(pred, truth, groups=groups, **report_options)
