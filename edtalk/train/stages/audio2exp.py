"""Stage 5 — audio/text-to-expression (docs/design.md §8.6), stage name `audio2exp`.

Per clip of the split: u_a = mean‖std of the frozen Audio2Lip encoder's embeddings (the offline
fallback, 1024-d; `model.audio2lip`), u_t = the text features of its transcript
(:class:`edtalk.text_emotion.TextFeatures`: the NRC lexicon vector by default, a local
sentence-embedding model with `model.text_encoder=<folder>`), target = the clip's mean α_e
(`edtalk extract-motion --parts exp`), label = its MEAD emotion.  Transcripts: `data.transcripts`
= ``synthetic`` (made from the emotion label, :func:`edtalk.text_emotion.synthetic_transcript` —
for SynthTalk, which has none) or a JSON file {clip name: sentence}.

Loss: MSE(α̂_e, α_e) + 0.1·CE(emotion logits, label) with per-item modality dropout.  Export:
`export/audio2exp/` (config.json + model.safetensors: predictor + the Audio2Lip it reads + the
text encoder's name), what `edtalk generate --exp audio` / `--exp-text` load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

from ...audio_features import utterance_features
from ...data import layout
from ...data.sequence_datasets import ExpressionItems, clip_table, emotion_label
from ...errors import EDTalkError, InputError
from ...networks.audio2lip import load_audio2lip
from ...networks.expression_predictor import (EXPRESSION_DIR, ExpressionPredictor, ExpressionPredictorConfig,
                                              modality_keep, save_expression_predictor)
from ...text_emotion import TextFeatures, synthetic_transcript
from ..stage import Stage, register_stage

__all__ = ["Audio2ExpStage", "clip_features", "transcripts_for"]

AUDIO2EXP_DEFAULTS = {
    "model": {
        "audio2lip": "???",       # frozen audio encoder (offline audio features)
        "text_encoder": "lexicon",  # or a local sentence-transformers folder
        "predictor": {"hidden": 512, "branch_out": 256},
    },
    "data": {"transcripts": "synthetic"},  # synthetic | a JSON file {clip name: sentence}
    "loss": {"mse": 1.0, "ce": 0.1},
    "optim": {"predictor": {"lr": 1e-4, "betas": [0.9, 0.999]}},
}


def transcripts_for(names, source: str) -> Dict[str, str]:
    if str(source) == "synthetic":
        return {n: synthetic_transcript(n) for n in names}
    path = Path(str(source))
    if not path.is_file():
        raise InputError(f"data.transcripts: {path} is neither 'synthetic' nor a JSON file")
    given = json.loads(path.read_text())
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(f"{path} has no transcript for {len(missing)} clips (e.g. {missing[0]})")
    return {n: str(given[n]) for n in names}


def clip_features(root, names, audio2lip, text: TextFeatures, transcripts: Dict[str, str], progress: bool = False):
    """(audio [N,1024], text [N,K], exp targets [N,10], labels [N]) for the clips `names`."""
    table = clip_table(root, names, audio2lip, "exp", progress=progress)
    audio = torch.stack([utterance_features(table[n]["audio"]) for n in names])
    text_feats = torch.stack([torch.from_numpy(text(transcripts[n])) for n in names])
    exp = torch.stack([table[n]["motion"].mean(0) for n in names])
    labels = torch.tensor([emotion_label(n) for n in names])
    return audio, text_feats, exp, labels


@register_stage("audio2exp")
class Audio2ExpStage(Stage):
    default_config = AUDIO2EXP_DEFAULTS

    def _features(self):
        if getattr(self, "_feats", None) is None:
            d, m = self.cfg.data, self.cfg.model
            self.audio2lip = load_audio2lip(m.audio2lip)
            self.text = TextFeatures(str(m.text_encoder))
            names = layout.read_split(d.root, str(d.split))
            if not names:
                raise EDTalkError(f"{d.root}/{d.split}.json lists no clips")
            self._feats = clip_features(d.root, names, self.audio2lip, self.text, transcripts_for(names, d.transcripts),
                                        progress=bool(self.cfg.run.progress))
        return self._feats

    def build_models(self):
        audio, text, _, _ = self._features()
        p = self.cfg.model.predictor
        net = ExpressionPredictor(ExpressionPredictorConfig(audio_dim=audio.shape[1], text_dim=text.shape[1],
                                                            hidden=int(p.hidden), branch_out=int(p.branch_out)))
        net.audio_mean.copy_(audio.mean(0))
        net.audio_std.copy_(audio.std(0, unbiased=False).clamp_min(1e-4))
        return {"predictor": net}

    def ema_models(self) -> List[str]:
        return ["predictor"]

    def build_dataset(self):
        d = self.cfg.data
        return ExpressionItems(*self._features(), seed=int(self.cfg.seed), length=int(d.length) if d.length else None)

    def losses(self, net: ExpressionPredictor, batch) -> Dict[str, torch.Tensor]:
        keep_audio, keep_text = modality_keep(batch["r"])
        audio = (batch["audio"] - net.audio_mean) / net.audio_std
        exp, logits = net.heads(audio, batch["text"], keep_audio, keep_text)
        loss = self.cfg.loss
        terms = {"mse": float(loss.mse) * F.mse_loss(exp.float(), batch["exp"].float())}
        if (batch["emotion"] >= 0).any():
            terms["ce"] = float(loss.ce) * F.cross_entropy(logits.float(), batch["emotion"], ignore_index=-1)
        return terms

    def train_step(self, batch, ctx):
        with ctx.autocast():
            terms = self.losses(self.models["predictor"], batch)
        total = sum(terms.values())
        ctx.optimize("predictor", total)
        return {"total": total.detach(), **{k: v.detach() for k, v in terms.items()}}

    def export(self, out_dir, ctx) -> List[str]:
        path = Path(out_dir) / EXPRESSION_DIR
        save_expression_predictor(path, ctx.ema_model("predictor"), self.audio2lip, self.text.encoder)
        return [str(path)]
