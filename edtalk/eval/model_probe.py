"""Disentanglement of a real EDTalk model, measured on a SynthTalk tree (known factors).

Kept for existing imports: the probes live in :mod:`edtalk.eval.probes` (per-frame navigation
weights of every clip, ridge-probed against the true factors by :mod:`edtalk.eval.disentangle`).
"""
from __future__ import annotations

from .probes import GROUP_TO_FACTOR, evaluate_model, extract_weights

__all__ = ["GROUP_TO_FACTOR", "evaluate_model", "extract_weights"]
