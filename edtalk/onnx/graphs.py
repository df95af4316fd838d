"""The torch modules that are exported, one per ONNX graph: thin wrappers that call the model's own
layers, so the graphs compute what `edtalk generate` computes with torch.

Batch is a dynamic axis everywhere.  Where the generator broadcasts one source over a batch of
frames (an image source: one latent, one feature pyramid), the graphs take the source with its own
batch S (1, or the frames' batch B when dubbing) and pick rows `min(i, S−1)`: a gather exports
with no shape guard, where `expand` would pin S to 1 in the exported graph.

The motion bases Q (a QR of the banks, which ONNX has no operator for) are computed here once and
stored in the graphs as constants.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

__all__ = ["EncoderGraph", "MotionGraph", "SourceTermsGraph", "ExpressionMapsGraph", "DecoderGraph",
           "Audio2LipGraph", "ExpressionPredictorGraph", "PoseFlowStepGraph", "rows_for"]


def rows_for(x: torch.Tensor, batch: int) -> torch.Tensor:
    """x [S,...] with S = 1 or `batch` as `batch` rows: row min(i, S−1), a broadcast that exports
    (the last index comes from a tensor, as the exporter cannot take the remainder of a symbolic size)."""
    last = torch.arange(x.shape[0], device=x.device)[-1:]
    return x.index_select(0, torch.minimum(torch.arange(batch, device=x.device), last))


class EncoderGraph(nn.Module):
    """images [B,3,H,W] → latent [B,D], feat_0 … feat_{L-1} (coarsest first)."""

    def __init__(self, model):
        super().__init__()
        self.enc = model.enc

    def forward(self, images):
        latent, feats = self.enc(images)
        return (latent, *feats)


class MotionGraph(nn.Module):
    """latent [B,D] → mouth [B,20], pose [B,6] (, exp [B,10] for the full model)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.parts = ("mouth", "pose", "exp") if model.has_expression else ("mouth", "pose")

    def forward(self, latent):
        weights = self.model.motion_weights(latent=latent, parts=self.parts)
        return tuple(weights[p] for p in self.parts)


class SourceTermsGraph(nn.Module):
    """The per-clip EEM terms IN(conv2(feat_k)) of a source (full model only)."""

    def __init__(self, model):
        super().__init__()
        self.eems = model.dec.fineadainresblock

    def forward(self, *feats):
        return tuple(eem.source_term(f) for eem, f in zip(self.eems, feats))


class ExpressionMapsGraph(nn.Module):
    """feat_k, eem_k [S,...] and exp [E,10] (E = S, or a multiple of it) → the EEM-enhanced maps [E,...]
    the decoder warps; d_e = Q_e α_e."""

    def __init__(self, model):
        super().__init__()
        self.eems = model.dec.fineadainresblock
        self.register_buffer("exp_bases", model.split_bases()["exp"].detach().t().contiguous())

    def forward(self, exp, *feats_and_terms):
        n = len(feats_and_terms) // 2
        feats, terms = feats_and_terms[:n], feats_and_terms[n:]
        d_exp = exp @ self.exp_bases
        batch = exp.shape[0]
        return tuple(eem.enhance(rows_for(f, batch), rows_for(t, batch), d_exp)
                     for eem, f, t in zip(self.eems, feats, terms))


class DecoderGraph(nn.Module):
    """latent [S,D], mouth [B,20], pose [B,6] (, exp [B,10]) and the maps to warp [M,...] (M = 1 or B)
    → frames [B,3,H,W]: z = wa + Q_m α_m + Q_p α_p (+ Q_e α_e), then the flow-field decoder."""

    def __init__(self, model):
        super().__init__()
        self.dec = model.dec
        self.has_expression = model.has_expression
        for name, q in model.split_bases().items():
            self.register_buffer(f"{name}_bases", q.detach().t().contiguous())

    def motion_latent(self, latent, mouth, pose, exp=None):
        batch = mouth.shape[0]
        z = rows_for(latent, batch) + mouth @ self.mouth_bases + pose @ self.pose_bases
        if exp is not None:
            z = z + exp @ self.exp_bases
        return z

    def forward(self, latent, mouth, pose, *rest):
        exp, maps = (rest[0], rest[1:]) if self.has_expression else (None, rest)
        z = self.motion_latent(latent, mouth, pose, exp)
        batch = z.shape[0]
        # No expression latent: the maps arrive already enhanced (ExpressionMapsGraph), or plain.
        return self.dec(z, [rows_for(m, batch) for m in maps], None)


class Audio2LipGraph(nn.Module):
    """mels [N,1,80,16] → mouth [N,20] and the encoder's embedding [N,512] (the pose flow and the
    expression predictor read the embedding)."""

    def __init__(self, audio2lip):
        super().__init__()
        self.audio2lip = audio2lip

    def forward(self, mels):
        embedding = self.audio2lip.embed(mels)
        return self.audio2lip.mapping(embedding), embedding


class ExpressionPredictorGraph(nn.Module):
    """Audio features [B,audio_dim], `audio_present` [B,1] (1, or 0 for no audio: standardised zeros,
    as the torch predictor) and text features [B,text_dim] (zeros for no text) → α_e [B,10],
    emotion logits [B,8]."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, audio, audio_present, text):
        p = self.predictor
        return p.heads((audio - p.audio_mean) / p.audio_std * audio_present, text)


class PoseFlowStepGraph(nn.Module):
    """One autoregressive step of the pose flow's sampler, LSTM states in and out:
    z [B,1,6], history [B,1,H·6] (standardised poses t−H…t−1), audio [B,1,2·context+1,audio_dim] (the
    frame's window of embeddings), h_k, c_k [layers,B,hidden] per coupling → x [B,1,6], new states.

    The invertible linear maps are inverted here, once (ONNX has no linear solver)."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow
        inverses = [torch.linalg.inv(mix.weight().detach().double()).float() for mix in flow.mixes]
        self.register_buffer("mix_inverses", torch.stack(inverses))

    def forward(self, z, history, audio, *states: torch.Tensor):
        flow = self.flow
        cond = torch.cat([history, flow.audio_proj(audio).flatten(-2)], -1)
        steps = len(flow.couplings)
        pairs: List[tuple] = [(states[2 * k], states[2 * k + 1]) for k in range(steps)]
        new: List[Sequence[torch.Tensor]] = [()] * steps
        for k in reversed(range(steps)):
            z, new[k] = flow.couplings[k].inverse(z, cond, pairs[k])
            z = flow.norms[k].inverse(z @ self.mix_inverses[k].t())
        return (z, *[t for pair in new for t in pair])
