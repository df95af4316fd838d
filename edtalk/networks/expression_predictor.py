"""Audio/text-to-expression (docs/design.md §8.6): one utterance → 10 expression weights + 8 emotion logits.

Branches (the official partial dimensions, with 10 outputs instead of the buggy 20):
- audio u_a [audio_dim] (HuBERT-class time mean, or the offline fallback: mean‖std of the
  Audio2Lip encoder's embeddings = 1024) → Linear 512, ReLU, BN → Linear 512, ReLU → Linear 256;
- text u_t [text_dim] (a sentence embedding, or the 10-d lexicon vector) → Linear text_dim + tanh
  → Linear 512, ReLU, BN → Linear 512, ReLU → Linear 256;
- fused = ReLU(concat) [512] → Linear → α_e [10]; emotion head Linear(512, 8).

Modality dropout (training), r ~ U(0,1): r > 0.5 keep both, 0.25 ≤ r ≤ 0.5 zero the audio,
r < 0.25 zero the text.  At test a missing modality is a zero vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from ..config import Audio2LipConfig
from ..modeling import PretrainedModel
from .audio2lip import Audio2Lip, with_audio2lip_arguments

__all__ = ["ExpressionPredictorConfig", "ExpressionPredictor", "AudioToExpression", "modality_keep", "EXPRESSION_DIR",
           "save_expression_predictor", "load_expression_predictor"]


@dataclass
class ExpressionPredictorConfig:
    audio_dim: int = 1024
    text_dim: int = 10
    hidden: int = 512
    branch_out: int = 256
    exp_dim: int = 10
    emotions: int = 8

    @classmethod
    def tiny(cls, **kw) -> "ExpressionPredictorConfig":
        base = dict(hidden=32, branch_out=16)
        base.update(kw)
        return cls(**base)


def modality_keep(r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(keep audio, keep text) float masks [B] for uniform draws r [B] (docs/design.md §8.6)."""
    keep_audio = (r > 0.5) | (r < 0.25)
    keep_text = r >= 0.25
    return keep_audio.to(torch.float32), keep_text.to(torch.float32)


def _branch(din: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, hidden), nn.ReLU(), nn.BatchNorm1d(hidden),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))


class ExpressionPredictor(nn.Module):
    def __init__(self, config: Optional[ExpressionPredictorConfig] = None):
        super().__init__()
        self.config = c = config or ExpressionPredictorConfig()
        self.audio_branch = _branch(c.audio_dim, c.hidden, c.branch_out)
        self.text_in = nn.Sequential(nn.Linear(c.text_dim, c.text_dim), nn.Tanh())
        self.text_branch = _branch(c.text_dim, c.hidden, c.branch_out)
        self.exp_head = nn.Linear(2 * c.branch_out, c.exp_dim)
        self.emotion_head = nn.Linear(2 * c.branch_out, c.emotions)
        # Audio features are standardised with the training set's statistics (kept with the model).
        self.register_buffer("audio_mean", torch.zeros(c.audio_dim))
        self.register_buffer("audio_std", torch.ones(c.audio_dim))

    def forward(self, audio: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None):
        """audio [B,audio_dim] and/or text [B,text_dim] (None = missing → zeros) → (α_e [B,10], logits [B,8])."""
        ref = audio if audio is not None else text
        if ref is None:
            raise ValueError("need audio or text features")
        b, c = ref.shape[0], self.config
        p = self.exp_head.weight
        a = torch.zeros(b, c.audio_dim, device=p.device, dtype=p.dtype) if audio is None else \
            (audio.to(p) - self.audio_mean) / self.audio_std
        t = torch.zeros(b, c.text_dim, device=p.device, dtype=p.dtype) if text is None else text.to(p)
        return self.heads(a, t)

    def heads(self, audio_std: torch.Tensor, text: torch.Tensor, keep_audio=None, keep_text=None):
        """The fused heads on standardised audio / text features, optionally masked per item."""
        if keep_audio is not None:
            audio_std = audio_std * keep_audio[:, None].to(audio_std)
        if keep_text is not None:
            text = text * keep_text[:, None].to(text)
        fused = torch.relu(torch.cat([self.audio_branch(audio_std), self.text_branch(self.text_in(text))], -1))
        return self.exp_head(fused), self.emotion_head(fused)


EXPRESSION_DIR, MODEL_TYPE = "audio2exp", "audio2exp"


class AudioToExpression(nn.Module, PretrainedModel):
    """The saved audio/text-to-expression model: the predictor, the frozen Audio2Lip of its audio
    features (weights `audio2exp.*` and `audio2lip.*`) and the name of its text encoder ('lexicon'
    or the sentence-embedding folder it was trained with)."""

    model_type, label = MODEL_TYPE, "audio2exp checkpoint"
    config_classes = {"config": ExpressionPredictorConfig, "audio2lip": Audio2LipConfig}
    default_names = (EXPRESSION_DIR,)  # an audio2exp run's export/audio2exp, or <checkpoint-dir>/audio2exp
    missing_hint = " (train one with `edtalk train --config configs/train/audio2exp.yaml`)"

    def __init__(self, config: Optional[ExpressionPredictorConfig] = None, audio2lip: Optional[Audio2LipConfig] = None,
                 text_encoder: str = "lexicon"):
        super().__init__()
        self.audio2exp = ExpressionPredictor(config)
        self.audio2lip = Audio2Lip(audio2lip)
        self.text_encoder = str(text_encoder)

    @classmethod
    def of(cls, predictor: ExpressionPredictor, audio2lip: Audio2Lip,
           text_encoder: str = "lexicon") -> "AudioToExpression":
        """The model made of a trained predictor and its Audio2Lip (the modules themselves, not copies)."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.audio2exp, model.audio2lip, model.text_encoder = predictor, audio2lip, str(text_encoder)
        return model

    def init_arguments(self) -> dict:
        return {"config": self.audio2exp.config, "audio2lip": self.audio2lip.config, "text_encoder": self.text_encoder}

    @classmethod
    def arguments_from_saved(cls, data: dict, tensors) -> dict:
        return with_audio2lip_arguments(super().arguments_from_saved(data, tensors), tensors)


def save_expression_predictor(directory, predictor: ExpressionPredictor, audio2lip: Audio2Lip,
                              text_encoder: str = "lexicon") -> Path:
    """One self-contained folder (config.json + model.safetensors), see :class:`AudioToExpression`."""
    return AudioToExpression.of(predictor, audio2lip, text_encoder).save_pretrained(directory)


def load_expression_predictor(path, device=None):
    """(ExpressionPredictor, Audio2Lip, text encoder name), eval and frozen, from an audio2exp export
    folder or a folder holding one (an audio2exp run's `export/`, or the run folder itself)."""
    model = AudioToExpression.from_pretrained(path, device).requires_grad_(False)
    return model.audio2exp, model.audio2lip, model.text_encoder
