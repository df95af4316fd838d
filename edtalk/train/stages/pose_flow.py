"""Stage 4 — audio-to-pose normalizing flow (docs/design.md §8.5), stage name `pose_flow`.

Data: the split's clips with cached α_p (`edtalk extract-motion --parts pose`, read with
:func:`edtalk.train.motion.load_motion`) and the frozen Audio2Lip encoder's per-frame embeddings
(`model.audio2lip`: an audio2lip stage run / export, or Audio2Lip.pt), computed once at start.
`pose_mean` / `pose_std` of the flow are set from the training split's frames.  Items are
`data.seq_len`-frame windows (:class:`edtalk.data.sequence_datasets.PoseSequences`); the loss is
the flow's exact NLL per frame (nats).  Export: `export/pose_flow/` (config.json +
model.safetensors: flow + the Audio2Lip it reads), what `edtalk generate --pose audio` loads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch

from ...data import layout
from ...data.sequence_datasets import PoseSequences, clip_table
from ...errors import EDTalkError
from ...networks.audio2lip import load_audio2lip
from ...networks.pose_flow import POSE_FLOW_DIR, PoseFlow, PoseFlowConfig, pad_edges, save_pose_flow
from ..stage import Stage, register_stage

__all__ = ["PoseFlowStage", "clip_nll"]

POSE_FLOW_DEFAULTS = {
    "model": {
        "audio2lip": "???",   # frozen audio encoder: Audio2Lip.pt, a saved folder or an audio2lip run
        "flow": {"history": 10, "context": 5, "audio_proj": 64, "steps": 16, "hidden": 256, "lstm_layers": 2,
                 "context_dropout": 0.5, "energy": False},   # energy: + per-frame log-RMS (docs/design.md §8.5)
    },
    "data": {"seq_len": 80},
    "optim": {"flow": {"lr": 1e-3, "betas": [0.9, 0.999]}},
}


def clip_nll(flow: PoseFlow, poses: torch.Tensor, audio: torch.Tensor) -> float:
    """Mean NLL per frame (nats) of one whole clip: poses [T,6], embeddings [T,512]; the history
    before frame 0 repeats frame 0 and the audio context repeats the end frames."""
    c = flow.config
    with torch.no_grad():
        p = pad_edges(poses[None].float(), c.history)[:, :-c.history] if c.history else poses[None].float()
        return float(flow.nll(p, pad_edges(audio[None].float(), c.context)))


@register_stage("pose_flow")
class PoseFlowStage(Stage):
    default_config = POSE_FLOW_DEFAULTS

    def _tables(self):
        if getattr(self, "_table", None) is None:
            d = self.cfg.data
            self.audio2lip = load_audio2lip(self.cfg.model.audio2lip)
            names = layout.read_split(d.root, str(d.split))
            if not names:
                raise EDTalkError(f"{d.root}/{d.split}.json lists no clips")
            self._table = clip_table(d.root, names, self.audio2lip, "pose", progress=bool(self.cfg.run.progress),
                                     energy=bool(self.cfg.model.flow.energy))
        return self._table

    def build_models(self):
        table = self._tables()
        f = self.cfg.model.flow
        cfg = PoseFlowConfig(history=int(f.history), context=int(f.context), audio_proj=int(f.audio_proj),
                             steps=int(f.steps), hidden=int(f.hidden), lstm_layers=int(f.lstm_layers),
                             context_dropout=float(f.context_dropout), energy=bool(f.energy),
                             audio_dim=int(next(iter(table.values()))["audio"].shape[1]))
        flow = PoseFlow(cfg)
        frames = torch.cat([t["motion"] for t in table.values()])
        flow.set_pose_stats(frames.mean(0), frames.std(0))
        return {"flow": flow}

    def ema_models(self) -> List[str]:
        return ["flow"]

    def build_dataset(self):
        d, f = self.cfg.data, self.cfg.model.flow
        return PoseSequences(self._tables(), seq_len=int(d.seq_len), history=int(f.history), context=int(f.context),
                             seed=int(self.cfg.seed), length=int(d.length) if d.length else None)

    def train_step(self, batch, ctx) -> Dict[str, torch.Tensor]:
        with ctx.autocast():
            nll = self.models["flow"].nll(batch["poses"], batch["audio"])
        if not torch.isfinite(nll):
            raise EDTalkError(f"pose-flow NLL is {float(nll)} (lower optim.flow.lr?)")
        ctx.optimize("flow", nll)
        return {"nll": nll.detach()}

    def export(self, out_dir, ctx) -> List[str]:
        path = Path(out_dir) / POSE_FLOW_DIR
        save_pose_flow(path, ctx.ema_model("flow"), self.audio2lip)
        return [str(path)]
