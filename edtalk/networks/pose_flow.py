"""Audio-to-pose normalizing flow (docs/design.md §8.5): MoGlow-style, over the 6 pose weights α_p.

Per frame t the flow maps the standardised pose x_t ∈ R^6 to z_t ~ N(0, I) given a condition
c_t = [previous `history` standardised poses (flattened) | audio embeddings of frames
t−context…t+context, each the frozen Audio2Lip encoder's 512-d vector linearly projected to
`audio_proj`, flattened; with `energy` each frame's vector ends with its log-RMS].  `steps` flow steps, each ActNorm → invertible linear (LU) → affine
coupling; the coupling's conditioner is an LSTM over time on [x_a, c_t] whose state is carried
from frame to frame (x_a is unchanged by the coupling, so the same LSTM runs in both directions).

Exact NLL per frame = 0.5‖z_t‖² + (D/2)·ln 2π − Σ log|det J|.  `pose_mean` / `pose_std` buffers
standardise α_p; `sample` seeds the history with the source's α_p and draws z_t ~ N(0, τ²I).

Written by hand rather than with a flow library: the conditioner is a recurrent network whose
state is carried through time during autoregressive sampling, which the usual flow libraries'
(stateless) transforms do not express.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Audio2LipConfig
from ..modeling import PretrainedModel
from .audio2lip import Audio2Lip, with_audio2lip_arguments

__all__ = ["PoseFlowConfig", "PoseFlow", "ActNorm", "InvertibleLinear", "LSTMCoupling", "pad_edges",
           "AudioToPose", "save_pose_flow", "load_pose_flow", "POSE_FLOW_DIR"]


@dataclass
class PoseFlowConfig:
    pose_dim: int = 6
    history: int = 10          # previous standardised poses in the condition
    context: int = 5           # audio frames each side of t
    audio_dim: int = 512       # Audio2Lip embedding size
    audio_proj: int = 64
    steps: int = 16
    hidden: int = 256          # LSTM width of each coupling
    lstm_layers: int = 2
    context_dropout: float = 0.5  # dropout on the pose history while training (MoGlow)
    energy: bool = False       # the audio vectors end with the frame's log-RMS (audio_dim counts it)

    @classmethod
    def tiny(cls, **kw) -> "PoseFlowConfig":
        base = dict(audio_proj=8, steps=4, hidden=32, lstm_layers=1)
        base.update(kw)
        return cls(**base)

    @property
    def cond_dim(self) -> int:
        return self.history * self.pose_dim + (2 * self.context + 1) * self.audio_proj


def pad_edges(x: torch.Tensor, n: int, dim: int = 1) -> torch.Tensor:
    """Repeat the first / last entry of `dim` n times on each side (the audio at the clip ends)."""
    if n == 0:
        return x
    first = x.narrow(dim, 0, 1).expand(*[n if d == dim % x.dim() else -1 for d in range(x.dim())])
    last = x.narrow(dim, x.shape[dim] - 1, 1).expand(*[n if d == dim % x.dim() else -1 for d in range(x.dim())])
    return torch.cat([first, x, last], dim)


def finish_samples(x: torch.Tensor, clamp: bool, smooth: bool) -> torch.Tensor:
    """The sampler's last steps on standardised samples [B,T,6] (torch and ONNX runners alike):
    clamp to ±3 standard deviations, then 3-tap smoothing along time with edge padding."""
    if clamp:
        x = x.clamp(-3.0, 3.0)
    if smooth:
        from ..audio import smooth as smooth_3tap

        x = torch.stack([smooth_3tap(seq, mode="edge") for seq in x])
    return x


class ActNorm(nn.Module):
    """y = (x + loc)·exp(log_scale), per dimension; log|det| = Σ log_scale per frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return (x + self.loc) * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y):
        return y * (-self.log_scale).exp() - self.loc


class InvertibleLinear(nn.Module):
    """y = W x with W = P·L·(U + diag(sign·exp(log_s))) (Glow's LU form); log|det| = Σ log_s."""

    def __init__(self, dim: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(dim, dim))[0]
        p, lower, upper = torch.linalg.lu(w)
        diag = upper.diagonal()
        self.register_buffer("perm", p)
        self.register_buffer("sign", diag.sign())
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(diag.abs().log())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_s.exp())
        return self.perm @ lower @ upper

    def forward(self, x):
        return x @ self.weight().T, self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y):
        return torch.linalg.solve(self.weight(), y.unsqueeze(-1)).squeeze(-1)


class LSTMCoupling(nn.Module):
    """Affine coupling: (log s, t) = Linear(LSTM([x_a, c])), s = sigmoid(log s + 2);
    y_b = (x_b + t)·s, y_a = x_a.  The LSTM runs over time with its state carried along."""

    def __init__(self, dim: int, cond_dim: int, hidden: int, layers: int):
        super().__init__()
        self.split = dim // 2
        self.lstm = nn.LSTM(self.split + cond_dim, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, 2 * (dim - self.split))
        nn.init.zeros_(self.out.weight)  # starts as the identity (up to the sigmoid's scale)
        nn.init.zeros_(self.out.bias)

    def _params(self, xa, cond, state):
        h, state = self.lstm(torch.cat([xa, cond], -1), state)
        raw, shift = self.out(h).chunk(2, -1)
        return F.logsigmoid(raw + 2.0), shift, state

    def forward(self, x, cond, state=None):
        xa, xb = x[..., :self.split], x[..., self.split:]
        log_s, shift, state = self._params(xa, cond, state)
        return torch.cat([xa, (xb + shift) * log_s.exp()], -1), log_s.sum(-1), state

    def inverse(self, y, cond, state=None):
        ya, yb = y[..., :self.split], y[..., self.split:]
        log_s, shift, state = self._params(ya, cond, state)
        return torch.cat([ya, yb * (-log_s).exp() - shift], -1), state


class PoseFlow(nn.Module):
    """The conditional flow; inputs are batch-first sequences [B,T,·]."""

    def __init__(self, config: Optional[PoseFlowConfig] = None):
        super().__init__()
        self.config = c = config or PoseFlowConfig()
        self.audio_proj = nn.Linear(c.audio_dim, c.audio_proj)
        self.history_dropout = nn.Dropout(c.context_dropout)
        self.norms = nn.ModuleList(ActNorm(c.pose_dim) for _ in range(c.steps))
        self.mixes = nn.ModuleList(InvertibleLinear(c.pose_dim) for _ in range(c.steps))
        self.couplings = nn.ModuleList(LSTMCoupling(c.pose_dim, c.cond_dim, c.hidden, c.lstm_layers)
                                       for _ in range(c.steps))
        self.register_buffer("pose_mean", torch.zeros(c.pose_dim))
        self.register_buffer("pose_std", torch.ones(c.pose_dim))

    # -- standardisation ----------------------------------------------------------------------
    def set_pose_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.pose_mean.copy_(torch.as_tensor(mean, dtype=self.pose_mean.dtype))
        self.pose_std.copy_(torch.as_tensor(std, dtype=self.pose_std.dtype).clamp_min(1e-4))

    def standardise(self, pose):
        return (pose - self.pose_mean) / self.pose_std

    def destandardise(self, x):
        return x * self.pose_std + self.pose_mean

    # -- conditions ---------------------------------------------------------------------------
    def audio_condition(self, audio: torch.Tensor) -> torch.Tensor:
        """[B,T+2·context,512] embeddings (context frames each side) → [B,T,(2·context+1)·audio_proj]."""
        k = 2 * self.config.context + 1
        proj = self.audio_proj(audio)                     # [B,T+k-1,P]
        return proj.unfold(1, k, 1).transpose(-1, -2).flatten(-2)  # window of frame t: t…t+k-1

    def history_condition(self, x_hist: torch.Tensor) -> torch.Tensor:
        """[B,H+T,6] standardised poses (H before the first frame) → [B,T,H·6] (frames t−H…t−1)."""
        h = self.config.history
        windows = x_hist[:, :-1].unfold(1, h, 1).transpose(-1, -2).flatten(-2)
        return self.history_dropout(windows)

    # -- the flow -----------------------------------------------------------------------------
    def to_latent(self, x: torch.Tensor, cond: torch.Tensor, states=None):
        """x [B,T,6] (standardised), cond [B,T,C] → z [B,T,6], log|det J| [B,T], LSTM states."""
        logdet = x.new_zeros(x.shape[:-1])
        states = list(states) if states is not None else [None] * len(self.couplings)
        for k, (norm, mix, coupling) in enumerate(zip(self.norms, self.mixes, self.couplings)):
            x, ld1 = norm(x)
            x, ld2 = mix(x)
            x, ld3, states[k] = coupling(x, cond, states[k])
            logdet = logdet + ld1 + ld2 + ld3
        return x, logdet, states

    def from_latent(self, z: torch.Tensor, cond: torch.Tensor, states=None):
        """The inverse of `to_latent` (same LSTM states), → x, states."""
        states = list(states) if states is not None else [None] * len(self.couplings)
        for k in reversed(range(len(self.couplings))):
            z, states[k] = self.couplings[k].inverse(z, cond, states[k])
            z = self.norms[k].inverse(self.mixes[k].inverse(z))
        return z, states

    def nll(self, poses: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Mean NLL per frame (nats) of poses [B,H+T,6] (raw α_p; the first H are history) given
        audio embeddings [B,T+2·context,512]."""
        x_all = self.standardise(poses)
        h = self.config.history
        cond = torch.cat([self.history_condition(x_all), self.audio_condition(audio)], -1)
        z, logdet, _ = self.to_latent(x_all[:, h:], cond)
        d = z.shape[-1]
        return (0.5 * z.pow(2).sum(-1) + 0.5 * d * math.log(2 * math.pi) - logdet).mean()

    @torch.no_grad()
    def sample(self, audio: torch.Tensor, seed_pose: torch.Tensor, temperature: float = 0.7,
               generator: Optional[torch.Generator] = None, clamp: bool = True, smooth: bool = True) -> torch.Tensor:
        """Pose weights [B,T,6] for per-frame audio embeddings [B,T,512], autoregressively.

        The history starts as the source's α_p `seed_pose` [B,6] repeated; z_t ~ N(0, τ²I) from
        `generator` (CPU; τ = 0 gives the mode-like path).  Optional ±3σ clamp and 3-tap smoothing.
        """
        c = self.config
        cond_audio = self.audio_condition(pad_edges(audio, c.context))
        b, t = cond_audio.shape[:2]
        hist = self.standardise(seed_pose)[:, None].expand(b, c.history, c.pose_dim).clone()
        noise = torch.randn(b, t, c.pose_dim, generator=generator) * float(temperature)
        noise = noise.to(cond_audio)
        states, out = None, []
        for i in range(t):
            cond = torch.cat([hist.flatten(1), cond_audio[:, i]], -1)[:, None]
            x, states = self.from_latent(noise[:, i:i + 1], cond, states)
            out.append(x)
            hist = torch.cat([hist[:, 1:], x], 1)
        return self.destandardise(finish_samples(torch.cat(out, 1), clamp, smooth))

POSE_FLOW_DIR, MODEL_TYPE = "pose_flow", "pose_flow"


class AudioToPose(nn.Module, PretrainedModel):
    """The saved audio-to-pose model: the flow and the frozen Audio2Lip whose embeddings it reads
    (one folder; weights `pose_flow.*` and `audio2lip.*`)."""

    model_type, label = MODEL_TYPE, "pose-flow checkpoint"
    config_classes = {"config": PoseFlowConfig, "audio2lip": Audio2LipConfig}
    default_names = (POSE_FLOW_DIR,)  # a pose_flow run's export/pose_flow, or <checkpoint-dir>/pose_flow
    missing_hint = " (train one with `edtalk train --config configs/train/pose_flow.yaml`)"

    def __init__(self, config: Optional[PoseFlowConfig] = None, audio2lip: Optional[Audio2LipConfig] = None):
        super().__init__()
        self.pose_flow = PoseFlow(config)
        self.audio2lip = Audio2Lip(audio2lip)

    @classmethod
    def of(cls, flow: PoseFlow, audio2lip: Audio2Lip) -> "AudioToPose":
        """The model made of a trained flow and its Audio2Lip (the modules themselves, not copies)."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.pose_flow, model.audio2lip = flow, audio2lip
        return model

    def init_arguments(self) -> dict:
        return {"config": self.pose_flow.config, "audio2lip": self.audio2lip.config}

    @classmethod
    def arguments_from_saved(cls, data: dict, tensors) -> dict:
        return with_audio2lip_arguments(super().arguments_from_saved(data, tensors), tensors)


def save_pose_flow(directory, flow: PoseFlow, audio2lip: Audio2Lip) -> Path:
    """One self-contained folder (config.json + model.safetensors): the flow and the frozen
    Audio2Lip whose embeddings it reads."""
    return AudioToPose.of(flow, audio2lip).save_pretrained(directory)


def load_pose_flow(path, device=None):
    """(PoseFlow, Audio2Lip), eval and frozen, from a pose-flow export folder or a folder holding
    one (a pose_flow run's `export/`, or the run folder itself)."""
    model = AudioToPose.from_pretrained(path, device).requires_grad_(False)
    return model.pose_flow, model.audio2lip
