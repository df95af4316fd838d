"""Run an `edtalk export-onnx` folder with onnxruntime, behind the interface the generation code
uses of the torch networks, so `edtalk generate --engine onnx` swaps the network calls and nothing else:

- :class:`OnnxEDTalk`: `encode`, `encode_latent`, `motion_weights`, `prepare_source`, `render`,
  `config`, `has_expression`, `variant`, `device`, `dtype`, like :class:`edtalk.model.EDTalk`;
- :class:`OnnxAudio2Lip`: called on mel windows → mouth weights, `embed` → embeddings;
- :class:`OnnxPoseFlow`: `sample` (the autoregressive loop here, one ONNX step a frame);
- :class:`OnnxExpressionPredictor`: called on audio / text features → (α_e, emotion logits).

Tensors go in and come out as CPU float32 torch tensors (numpy views, no copies). Execution
providers: CUDA when onnxruntime has it and the device asks for it (`auto` or `cuda`), else the CPU;
CPU threads follow torch's setting (`torch.get_num_threads()`), as the torch engine does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..config import Audio2LipConfig, EDTalkConfig, GeneratorVariant
from ..errors import CheckpointError, InputError
from .export import FORMAT_VERSION, METADATA_FILE

__all__ = ["OnnxEDTalk", "OnnxAudio2Lip", "OnnxPoseFlow", "OnnxExpressionPredictor", "read_metadata",
           "load_onnx_models", "load_onnx_pose_flow", "load_onnx_expression_predictor", "providers_for",
           "ONNX_INSTALL_HINT"]

ONNX_INSTALL_HINT = "pip install 'edtalk[onnx]' (onnxruntime, or onnxruntime-gpu for the CUDA provider)"


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(f"--engine onnx needs onnxruntime: {ONNX_INSTALL_HINT}") from None
    return onnxruntime


def providers_for(device: str = "auto") -> List[str]:
    """onnxruntime execution providers for a device name (auto, cpu, cuda, cuda:N)."""
    available = _ort().get_available_providers()
    kind = str(device).split(":")[0]
    if kind in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind == "cuda":
        raise InputError("--device cuda with --engine onnx needs onnxruntime's CUDA provider "
                         "(pip install onnxruntime-gpu); onnxruntime here has " + ", ".join(available))
    if kind not in ("auto", "cpu"):
        raise InputError(f"--engine onnx runs on cpu or cuda, not {device!r}")
    return ["CPUExecutionProvider"]


def read_metadata(folder) -> dict:
    """The export's edtalk_onnx.json; CheckpointError when `folder` is not an export of a known format."""
    folder = Path(folder)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an ONNX export (no {METADATA_FILE}): make one with "
                              "`edtalk export-onnx --checkpoint-dir DIR --out DIR`")
    try:
        metadata = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); export again") from None
    if metadata.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: export format {metadata.get('format')!r}, this edtalk reads {FORMAT_VERSION}; "
                              "export again with this version")
    return metadata


class _Graphs:
    """onnxruntime sessions of one model folder, made on first use."""

    def __init__(self, folder: Path, entry: dict, device: str = "auto"):
        self.folder, self.entry, self.device = Path(folder), entry, device
        self.sessions: Dict[str, object] = {}

    def session(self, name: str):
        if name not in self.sessions:
            ort = _ort()
            path = self.folder / self.entry["graphs"][name]["file"]
            if not path.is_file():
                raise CheckpointError(f"ONNX graph missing: {path} (export again)")
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3  # warnings about unused initialisers etc. are not the user's concern
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers_for(self.device))
        return self.sessions[name]

    def run(self, name: str, **inputs) -> List[np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return self.session(name).run(None, feed)


def _np(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().to("cpu", torch.float32).numpy()


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


def _rows(x: np.ndarray, batch: int) -> np.ndarray:
    return x if x.shape[0] == batch else np.broadcast_to(x, (batch,) + x.shape[1:])


class OnnxSource(list):
    """A source's feature pyramid (numpy) with its per-clip EEM terms and the maps of the last
    constant expression (as the torch engine's `SourceFeatures`)."""

    def __init__(self, feats: Sequence[np.ndarray], terms: Optional[List[np.ndarray]]):
        super().__init__(feats)
        self.terms = terms
        self.enhanced = None  # (expression bytes, maps)


class OnnxEDTalk(GeneratorVariant):
    """The generator's graphs (see the module docstring)."""

    def __init__(self, folder, entry: dict, device: str = "auto"):
        self.graphs = _Graphs(folder, entry, device)
        self.config = EDTalkConfig(**entry["config"])
        self.folder = Path(folder)

    # ------------------------------------------------------------------ what generation reads
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # inputs and outputs live on the host; the provider is internal

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def eval(self):
        return self

    def requires_grad_(self, flag: bool = False):
        return self

    # ------------------------------------------------------------------ networks
    def _check_images(self, images):
        size = self.config.size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"expected images [B,3,{size},{size}], got {tuple(images.shape)}")

    def encode(self, images: torch.Tensor):
        self._check_images(images)
        latent, *feats = self.graphs.run("encoder", images=_np(images))
        return _torch(latent), [_torch(f) for f in feats]

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[0]

    def motion_weights(self, images=None, latent=None, parts=("mouth", "pose", "exp")) -> Dict[str, torch.Tensor]:
        if latent is None:
            latent = self.encode_latent(images)
        heads = ["mouth", "pose"] + (["exp"] if self.has_expression else [])
        out = dict(zip(heads, self.graphs.run("motion", latent=_np(latent))))
        return {name: _torch(out[name]) for name in parts if name in out}

    def prepare_source(self, feats) -> OnnxSource:
        if isinstance(feats, OnnxSource):
            return feats
        arrays = [_np(f) for f in feats]
        terms = None
        if self.has_expression:
            names = self.graphs.entry["graphs"]["source_terms"]["inputs"]
            terms = self.graphs.run("source_terms", **dict(zip(names, arrays)))
        return OnnxSource(arrays, terms)

    def _expression_maps(self, source: OnnxSource, exp: np.ndarray) -> List[np.ndarray]:
        batch = max(exp.shape[0], source[0].shape[0])
        inputs = {"exp": _rows(exp, batch)}
        inputs.update({f"feat_{k}": f for k, f in enumerate(source)})
        inputs.update({f"eem_{k}": t for k, t in enumerate(source.terms)})
        return self.graphs.run("expression_maps", **inputs)

    def maps_for(self, source: OnnxSource, exp: Optional[np.ndarray]) -> List[np.ndarray]:
        """The maps the decoder warps: the plain features, or the EEM-enhanced ones (computed once
        while a one-source clip keeps one expression)."""
        if exp is None:
            return list(source)
        if exp.shape[0] == 1 and source[0].shape[0] == 1:
            key = exp.tobytes()
            if source.enhanced is None or source.enhanced[0] != key:
                source.enhanced = (key, self._expression_maps(source, exp))
            return source.enhanced[1]
        return self._expression_maps(source, exp)

    def render(self, latent, feats, mouth=None, pose=None, exp=None) -> torch.Tensor:
        """Frames [B,3,H,W] as :meth:`edtalk.model.EDTalk.render` (a batch-1 source broadcasts)."""
        if exp is not None and not self.has_expression:
            raise ValueError("the lip-pose model has no expression space; pass exp=None")
        source = self.prepare_source(feats)
        latent = _np(latent)
        given = {"mouth": mouth, "pose": pose, "exp": exp}
        batch = max([latent.shape[0]] + [t.shape[0] for t in given.values() if t is not None])
        dims = {"mouth": self.config.mouth_dim, "pose": self.config.pose_dim, "exp": self.config.exp_dim}
        weights = {}
        for name in ("mouth", "pose") + (("exp",) if self.has_expression else ()):
            value = given[name]
            # A factor not given adds nothing to z: zero weights (and no EEM for a missing expression).
            weights[name] = _rows(_np(value), batch) if value is not None else np.zeros((batch, dims[name]), np.float32)
        maps = self.maps_for(source, _np(exp) if exp is not None else None)
        inputs = {"latent": latent, **weights, **{f"map_{k}": m for k, m in enumerate(maps)}}
        return _torch(self.graphs.run("decoder", **inputs)[0])

    def __call__(self, source: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
        latent, feats = self.encode(source)
        w = self.motion_weights(driver)
        return self.render(latent, feats, w["mouth"], w["pose"], w.get("exp"))


class OnnxAudio2Lip:
    """Audio2Lip's graph: called on mel windows [N,1,80,16] (or [B,T,1,80,16]) → mouth weights."""

    def __init__(self, folder, entry: dict, device: str = "auto"):
        self.graphs = _Graphs(folder, entry, device)
        self.config = Audio2LipConfig(**entry["audio2lip_config"])

    def eval(self):
        return self

    def requires_grad_(self, flag: bool = False):
        return self

    def parameters(self):
        """What generation reads off a module's parameters: the device and dtype inputs should have."""
        yield torch.empty(0, dtype=torch.float32)

    def _run(self, mels: torch.Tensor):
        return self.graphs.run("audio2lip", mels=_np(mels))

    def embed(self, mels: torch.Tensor) -> torch.Tensor:
        return _torch(self._run(mels)[1])

    def __call__(self, mels: torch.Tensor) -> torch.Tensor:
        batched = mels.dim() == 5
        flat = mels.flatten(0, 1) if batched else mels
        out = _torch(self._run(flat)[0])
        return out.view(mels.shape[0], mels.shape[1], -1) if batched else out


class OnnxPoseFlow:
    """The audio-to-pose flow's sampler on its one-step graph (see PoseFlow.sample for the method)."""

    def __init__(self, folder, entry: dict, device: str = "auto"):
        from ..networks.pose_flow import PoseFlowConfig

        self.graphs = _Graphs(folder, entry, device)
        info = entry["pose_flow"]
        self.config = PoseFlowConfig(**info["config"])
        self.mean = torch.tensor(info["pose_mean"])
        self.std = torch.tensor(info["pose_std"])
        self.layers, self.hidden = int(info["lstm_layers"]), int(info["lstm_hidden"])

    def eval(self):
        return self

    @torch.no_grad()
    def sample(self, audio: torch.Tensor, seed_pose: torch.Tensor, temperature: float = 0.7,
               generator: Optional[torch.Generator] = None, clamp: bool = True, smooth: bool = True) -> torch.Tensor:
        from ..networks.pose_flow import finish_samples, pad_edges

        c = self.config
        k = 2 * c.context + 1
        windows = pad_edges(audio.float(), c.context).unfold(1, k, 1).transpose(-1, -2)  # [B,T,k,D]
        b, t = windows.shape[:2]
        hist = ((seed_pose.float() - self.mean) / self.std)[:, None].expand(b, c.history, c.pose_dim).clone()
        # Same noise as the torch sampler for the same generator: same poses.
        noise = torch.randn(b, t, c.pose_dim, generator=generator) * float(temperature)
        states = {f"{part}_{s}": np.zeros((self.layers, b, self.hidden), np.float32)
                  for s in range(c.steps) for part in ("h", "c")}
        names = self.graphs.entry["graphs"]["pose_flow_step"]["inputs"][3:]
        out = []
        for i in range(t):
            x, *new = self.graphs.run("pose_flow_step", z=_np(noise[:, i:i + 1]), history=_np(hist.reshape(b, 1, -1)),
                                      audio=_np(windows[:, i:i + 1]), **states)
            states = dict(zip(names, new))
            x = _torch(x)
            out.append(x)
            hist = torch.cat([hist[:, 1:], x], 1)
        return finish_samples(torch.cat(out, 1), clamp, smooth) * self.std + self.mean


class OnnxExpressionPredictor:
    """The audio/text-to-expression predictor's graph: a missing modality is a zero vector."""

    def __init__(self, folder, entry: dict, device: str = "auto"):
        from ..networks.expression_predictor import ExpressionPredictorConfig

        self.graphs = _Graphs(folder, entry, device)
        self.config = ExpressionPredictorConfig(**entry["config"])

    def eval(self):
        return self

    def __call__(self, audio: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None):
        ref = audio if audio is not None else text
        if ref is None:
            raise ValueError("need audio or text features")
        b, c = ref.shape[0], self.config
        present = np.full((b, 1), 0.0 if audio is None else 1.0, np.float32)
        audio = _np(audio) if audio is not None else np.zeros((b, c.audio_dim), np.float32)
        text = _np(text) if text is not None else np.zeros((b, c.text_dim), np.float32)
        exp, logits = self.graphs.run("audio2exp", audio=audio, audio_present=present, text=text)
        return _torch(exp), _torch(logits)


# ----------------------------------------------------------------------------- loading

def load_onnx_models(folder, expression: bool, need_audio: bool, device: str = "auto"):
    """(OnnxEDTalk, OnnxAudio2Lip or None) from an export folder. The generator is chosen as the
    torch engine chooses its checkpoint: the lip-pose model when no expression drives and it was
    exported, else the full model."""
    folder = Path(folder)
    metadata = read_metadata(folder)
    full, lip_pose = metadata["models"].get("EDTalk"), metadata["models"].get("EDTalk_lip_pose")
    if expression and full is None:
        raise CheckpointError(f"{folder} has no full EDTalk model (EDTalk/): expression driving needs it; "
                              "or use --exp none")
    name = "EDTalk_lip_pose" if (not expression and lip_pose is not None) or full is None else "EDTalk"
    model = OnnxEDTalk(folder / name, metadata["models"][name], device)
    audio2lip = None
    if need_audio:
        entry = metadata["models"].get("Audio2Lip")
        if entry is None:
            raise CheckpointError(f"{folder} has no Audio2Lip/: audio-driven generation needs it "
                                  "(export from a checkpoint folder with Audio2Lip)")
        audio2lip = OnnxAudio2Lip(folder / "Audio2Lip", entry, device)
    return model, audio2lip


def _predictor_entry(folder: Path, name: str):
    folder = Path(folder)
    metadata = read_metadata(folder.parent)
    entry = metadata["models"].get(name)
    if entry is None:
        raise CheckpointError(f"{folder.parent} has no {name}/ (export from a checkpoint folder that has one)")
    return entry


def load_onnx_pose_flow(folder, device: str = "auto"):
    """(OnnxPoseFlow, OnnxAudio2Lip) of `<export>/pose_flow`, as `load_pose_flow` returns its pair."""
    entry = _predictor_entry(folder, "pose_flow")
    return OnnxPoseFlow(folder, entry, device), OnnxAudio2Lip(folder, entry, device)


def load_onnx_expression_predictor(folder, device: str = "auto"):
    """(OnnxExpressionPredictor, OnnxAudio2Lip, text encoder name) of `<export>/audio2exp`."""
    entry = _predictor_entry(folder, "audio2exp")
    return OnnxExpressionPredictor(folder, entry, device), OnnxAudio2Lip(folder, entry, device), entry["text_encoder"]
