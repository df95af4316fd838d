"""The engine: where a model folder's networks are, loading them, and running them batch by batch.

The pipeline talks to the generator through a narrow interface — `encode` / `encode_latent`,
`motion_weights`, `prepare_source`, `render`, plus `config`, `has_expression`, `variant`,
`device`, `dtype` — which :class:`edtalk.model.EDTalk` has and :class:`edtalk.onnx.runtime.OnnxEDTalk`
copies, so `engine="onnx"` swaps the network calls and nothing else (`load_generator_pair`).

:class:`Generator` drives one such model: driver videos are encoded once, only the heads whose
output is used run, Audio2Lip runs in large batches, and frames are rendered `batch_size` at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from .. import audio as audio_lib
from ..checkpoints import find_model
from ..errors import CheckpointError
from ..networks.expression_predictor import EXPRESSION_DIR as AUDIO2EXP_DIR
from ..networks.pose_flow import POSE_FLOW_DIR
from .drivers import DriverPlan

EDTALK_FILE, LIP_POSE_FILE, AUDIO2LIP_FILE = "EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt"
AUDIO_BATCH = 256  # mel windows per Audio2Lip call (a small network: large batches are cheap)
ENGINES = ("torch", "onnx")
ONNX_GENERATOR = "EDTalk"  # the generator folder inside an `edtalk export-onnx` folder (its presets/ sit there)


# ----------------------------------------------------------------------------- where the networks are

def model_part(folder: Path, file_name: str) -> Optional[Path]:
    """`EDTalk.pt` (an official-format file) or `EDTalk/` (a saved model folder: model.safetensors +
    config.json) in `folder`, whichever is there; None when neither is."""
    found = find_model(folder, "", (file_name, Path(file_name).stem), named_only=True)
    return found.path if found is not None else None


@dataclass(frozen=True)
class ModelFiles:
    """Where each network of a model folder is: the folder's own files unless one is given.

    `folder` is a checkpoint folder (official `.pt` files or saved model folders, e.g.
    `checkpoints/synthtalk`), or an `edtalk export-onnx` folder when `engine` is "onnx".
    """

    folder: Path
    checkpoint: Optional[Path] = None  # the generator for every call (else chosen per call, see `generator`)
    audio2lip: Optional[Path] = None
    pose_flow: Optional[Path] = None
    audio2exp: Optional[Path] = None
    engine: str = "torch"

    def generator(self, expression: bool) -> Path:
        """The generator a call loads: the given checkpoint; else the lip-pose model when no expression
        drives and it is there, else the full model (docs/design.md §5.1)."""
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        full, lip_pose = model_part(self.folder, EDTALK_FILE), model_part(self.folder, LIP_POSE_FILE)
        if not expression and lip_pose is not None:
            return lip_pose
        if full is not None or expression:
            return full or self.folder / EDTALK_FILE
        return self.folder / LIP_POSE_FILE

    def audio2lip_path(self) -> Path:
        if self.audio2lip is not None:
            return Path(self.audio2lip)
        return model_part(self.folder, AUDIO2LIP_FILE) or self.folder / AUDIO2LIP_FILE

    def pose_flow_path(self) -> Path:
        if self.engine == "onnx":  # the export's own copy (edtalk export-onnx)
            return self.folder / POSE_FLOW_DIR
        return Path(self.pose_flow) if self.pose_flow is not None else self.folder / POSE_FLOW_DIR

    def audio2exp_path(self) -> Path:
        if self.engine == "onnx":
            return self.folder / AUDIO2EXP_DIR
        return Path(self.audio2exp) if self.audio2exp is not None else self.folder / AUDIO2EXP_DIR

    def preset_anchor(self) -> Path:
        """The generator whose presets/ folder (inside it or beside it) holds this model's presets."""
        return self.folder / ONNX_GENERATOR if self.engine == "onnx" else self.generator(expression=True)


def missing_checkpoint_error(path: Path) -> CheckpointError:
    from ..bundled import bundled_model_hint

    return CheckpointError(f"checkpoint not found: {path} — run `edtalk download` or place the file by hand "
                           f"(see checkpoints/README.md){bundled_model_hint(path)}", field="checkpoint",
                           plain=f"no model at {path}: run `edtalk download` or choose another checkpoint folder")


def load_generator(path: Path, device, dtype):
    """An EDTalk generator (official `.pt` or saved folder), frozen, on `device` in `dtype`."""
    from ..model import EDTalk

    if not Path(path).exists():
        raise missing_checkpoint_error(Path(path))
    return EDTalk.from_pretrained(path).to(device, dtype).requires_grad_(False).eval()


def load_audio2lip(path: Path, device):
    """Audio2Lip (official `.pt` or saved folder), frozen, on `device` (float32: a small network)."""
    from ..networks.audio2lip import Audio2Lip

    if not Path(path).exists():
        raise missing_checkpoint_error(Path(path))
    return Audio2Lip.from_pretrained(path).to(device).requires_grad_(False).eval()


# ----------------------------------------------------------------------------- running the networks

@dataclass
class Drivers:
    """Per-output-frame motion weights (float32, on the model device)."""

    mouth: torch.Tensor
    pose: Optional[torch.Tensor]
    exp: Optional[torch.Tensor]
    exp_constant: bool = False  # one expression for every frame (presets, source's own)

    def __len__(self):
        return self.mouth.shape[0]

    @classmethod
    def from_plan(cls, plan: DriverPlan, mouth: torch.Tensor, own_pose: torch.Tensor,
                  pose: Optional[torch.Tensor] = None, exp: Optional[torch.Tensor] = None,
                  constant_exp: Optional[torch.Tensor] = None) -> "Drivers":
        """Gather per-frame weights by the plan's index arrays.

        mouth [N_lip,20]; own_pose [1,6] (used where no pose sequence drives); pose [N_pose,6] and
        exp [N_exp,10] driver sequences (indexed by plan.pose / plan.exp); constant_exp [1,10] for
        a preset / image / the source's own expression, None for the lip-pose model.
        """
        def take(weights, index):
            return weights.index_select(0, torch.as_tensor(index, device=weights.device))

        length = len(plan)
        pose_w = take(pose, plan.pose) if plan.pose is not None else own_pose.expand(length, -1)
        exp_w = None
        if plan.exp is not None:
            exp_w = take(exp, plan.exp)
        elif constant_exp is not None:
            exp_w = constant_exp.reshape(1, -1).expand(length, -1)
        constant = exp_w is not None and bool((exp_w == exp_w[:1]).all())
        return cls(take(mouth, plan.lip), pose_w, exp_w, exp_constant=constant)


class Generator:
    """Batched, cached generation on one loaded model (+ Audio2Lip for audio modes)."""

    def __init__(self, model, audio2lip=None, batch_size: int = 8, progress: bool = True):
        self.model = model.eval()
        self.audio2lip = audio2lip.eval() if audio2lip is not None else None
        self.batch_size = max(1, int(batch_size))
        self.progress = progress

    @property
    def device(self):
        return self.model.device

    @property
    def dtype(self):
        return self.model.dtype

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(device=self.device, dtype=self.dtype)

    def batches(self, n: int, desc: str, size: Optional[int] = None):
        size = size or self.batch_size
        starts = range(0, n, size)
        if self.progress and n > size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch", leave=False)
        for s in starts:
            yield slice(s, min(n, s + size))

    @torch.inference_mode()
    def encode(self, images: torch.Tensor):
        """(latent, feature maps) of source images in [-1,1]."""
        return self.model.encode(self.to_model(images))

    @torch.inference_mode()
    def video_latents(self, video) -> torch.Tensor:
        """Encoder latents of every frame of a driver video, computed once per video (kept on it;
        the frames themselves stream through one batch at a time)."""
        if video.latents is None:
            batches = video.image_batches(self.batch_size)
            if self.progress and len(video) > self.batch_size:
                from tqdm.auto import tqdm

                batches = tqdm(batches, desc="encoding driver", unit="batch", leave=False,
                               total=-(-len(video) // self.batch_size))
            video.latents = torch.cat([self.model.encode_latent(self.to_model(b)) for b in batches])
        return video.latents

    @torch.inference_mode()
    def heads(self, latents: torch.Tensor, parts) -> Dict[str, torch.Tensor]:
        # Weights stay in at least float32 (fp16/bf16 models still get precise α).
        out = self.model.motion_weights(latent=latents, parts=parts)
        return {k: v.to(torch.promote_types(v.dtype, torch.float32)) for k, v in out.items()}

    def mouth_from_audio(self, wav: np.ndarray, smoothing: str = "edge") -> torch.Tensor:
        """Smoothed mouth weights [T,20] of 16 kHz speech."""
        return audio_lib.smooth(self.lip_weights(audio_lib.mel_windows(wav)), mode=smoothing)

    @torch.inference_mode()
    def lip_weights(self, mels: torch.Tensor) -> torch.Tensor:
        """Audio2Lip's mouth weights [T,20] (float32, unsmoothed) of mel windows [T,1,80,16]."""
        if self.audio2lip is None:
            raise CheckpointError("audio-driven generation needs an Audio2Lip checkpoint")
        param = next(self.audio2lip.parameters())
        if len(mels) == 0:
            return torch.zeros(0, self.audio2lip.config.mouth_dim, device=param.device)
        return torch.cat([self.audio2lip(mels[sl].to(param.device, param.dtype))
                          for sl in self.batches(len(mels), "audio", AUDIO_BATCH)]).float()

    def render(self, latent, feats, drivers: Drivers, on_frames: Callable[[torch.Tensor], None],
               desc: str = "rendering") -> None:
        """Render all frames of one source in batches; `on_frames` receives float frames [b,3,H,W]."""
        for frames in self.render_batches(latent, feats, drivers, desc):
            on_frames(frames)

    @torch.inference_mode()
    def render_batches(self, latent, feats, drivers: Drivers, desc: str = "rendering"):
        """Float frames [b,3,H,W] of one source, `batch_size` at a time; each batch is rendered when
        the next one is asked for (a generator: streaming takes frames as they are made)."""
        prepared = self.model.prepare_source(feats)
        for sl in self.batches(len(drivers), desc):
            yield self.render_slice(latent, prepared, drivers, sl)

    @torch.inference_mode()
    def render_slice(self, latent, prepared, drivers: Drivers, sl: slice) -> torch.Tensor:
        """Frames `sl` of `drivers` from a source's latent and `model.prepare_source` features."""
        exp = None
        if drivers.exp is not None:
            exp = drivers.exp[:1] if drivers.exp_constant else drivers.exp[sl]
        pose = drivers.pose[sl] if drivers.pose is not None else None
        return self.model.render(latent, prepared, drivers.mouth[sl], pose, exp)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Clamp to [-1,1], then round((x+1)·127.5): [B,3,H,W] → uint8 [B,H,W,3]."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def legacy_minmax_uint8(frames: torch.Tensor, lo=None, hi=None) -> np.ndarray:
    """The official per-clip min–max mapping ⌊255(x−min)/(max−min)⌋ (opt-in only; bug 3).
    `lo`/`hi`: the clip's extremes (default: those of `frames`)."""
    x = frames.float()
    lo = x.min() if lo is None else torch.as_tensor(lo, dtype=x.dtype)
    hi = x.max() if hi is None else torch.as_tensor(hi, dtype=x.dtype)
    x = torch.floor(255 * (x - lo) / torch.clamp(hi - lo, min=1e-12)).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Expression:
    """An expression driver: a per-frame sequence (indexed by the plan) or one constant vector."""

    sequence: Optional[torch.Tensor] = None  # [N,10]
    constant: Optional[torch.Tensor] = None  # [1,10]
    trim: int = 0  # tail frames the plan drops from a long sequence


__all__ = ["EDTALK_FILE", "LIP_POSE_FILE", "AUDIO2LIP_FILE", "AUDIO_BATCH", "ENGINES", "ModelFiles", "model_part",
           "missing_checkpoint_error", "load_generator", "load_audio2lip", "Drivers", "Generator", "Expression",
           "to_uint8", "legacy_minmax_uint8"]
