"""The metric registry: what each metric is, which network it needs, and where its weights come from.

Every pretrained network is a local file named by a flag or an environment variable; nothing is
downloaded.  A metric whose network is missing is *skipped with a reason* (shown in the table),
never a traceback.  Offline stand-ins (networks that ship inside an installed package, or that
this project trains) are labelled ``comparable=False``: their numbers are not the paper's metric.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from ...errors import EDTalkError


class MetricUnavailable(EDTalkError):
    """A metric cannot run here; the message is the one-line reason shown in the table."""


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str  # column header
    higher_is_better: bool
    # how per-clip values combine: "frames" (mean over all frames), "clips" (mean of clip means),
    # "dataset" (one value over every frame, e.g. FID), "percent" (share of correct clips ×100)
    reduce: str = "clips"
    fmt: str = "{:.3f}"

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


METRICS: Dict[str, MetricInfo] = {m.key: m for m in (
    MetricInfo("psnr", "PSNR", True, "frames"),
    MetricInfo("ssim", "SSIM", True, "frames"),
    MetricInfo("lpips", "LPIPS", False, "frames"),
    MetricInfo("m_lmd", "M-LMD", False, "clips"),
    MetricInfo("f_lmd", "F-LMD", False, "clips"),
    MetricInfo("fid", "FID", False, "dataset"),
    MetricInfo("lse_c", "LSE-C", True, "clips"),
    MetricInfo("lse_d", "LSE-D", False, "clips"),
    MetricInfo("acc_emo", "Acc_emo", True, "percent", "{:.2f} %"),
    MetricInfo("csim", "CSIM", True, "frames"),
)}


@dataclass(frozen=True)
class WeightSource:
    """One pretrained network the metrics may use: its flag, environment variable and provenance."""

    name: str
    flag: str
    env: str
    metrics: tuple
    what: str  # what the file is and where the field gets it


WEIGHT_SOURCES: Dict[str, WeightSource] = {w.name: w for w in (
    WeightSource("lpips", "--lpips-weights", "EDTALK_LPIPS_WEIGHTS", ("lpips",),
                 "torchvision's AlexNet ImageNet weights alexnet-owt-7be5be79.pth (the `lpips` package ships "
                 "only its linear heads)"),
    WeightSource("fid", "--fid-weights", "EDTALK_FID_WEIGHTS", ("fid",),
                 "torchvision's Inception-v3 ImageNet weights inception_v3_google-0cc3c7bd.pth (EAT's FID "
                 "network), or pytorch-fid's TF-Inception pt_inception-2015-12-05-6726825d.pth (not EAT's)"),
    WeightSource("syncnet_v2", "--syncnet-v2", "EDTALK_SYNCNET_V2", ("lse_c", "lse_d"),
                 "syncnet_python's syncnet_v2.model (loaded as it is), or a TorchScript/.pt2 export with "
                 "forward(mfcc [N,1,13,20], video [N,3,5,224,224] BGR 0-255) -> (audio_emb, video_emb)"),
    WeightSource("syncnet", "--syncnet", "EDTALK_SYNCNET", ("lse_c", "lse_d"),
                 "a SyncNet expert (docs/design.md §2.10): our saved folder from Training II or Wav2Lip's "
                 "lipsync_expert.pth; a stand-in, not comparable (used when no --syncnet-v2 is given)"),
    WeightSource("emotion", "--emotion-classifier", "EDTALK_EMOTION_CLASSIFIER", ("acc_emo",),
                 "EAT's Emotion-FAN checkpoint (self_relation-attention_*, from EAT's evaluation code), or a "
                 "TorchScript/.pt2 frame classifier ([N,3,224,224] RGB 0-1 -> 8 logits in MEAD order; not EAT's)"),
    WeightSource("arcface", "--arcface", "EDTALK_ARCFACE", ("csim",),
                 "an ArcFace as TorchScript or torch.export .pt2 ([N,3,112,112] RGB in [-1,1] on insightface's "
                 "norm_crop -> embeddings); without it CSIM uses dlib's face-recognition ResNet"),
    WeightSource("eat_template", "--eat-template", "EDTALK_EAT_TEMPLATE", ("psnr", "ssim", "lpips", "m_lmd", "f_lmd", "fid"),
                 "EAT's alignment template base_68.npy (base_68_close.npy beside it), from EAT's evaluation "
                 "code; without it the EAT crop uses a stand-in template (marked)"),
)}

# Weight files whose exact bytes are known: torchvision/pytorch-fid name them by their sha256 prefix.
KNOWN_SHA256_PREFIXES = {"lpips": ("7be5be79",), "fid": ("0cc3c7bd", "6726825d")}

PROTOCOLS = ("eat", "native")


def file_sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class MetricSettings:
    """Weight paths (None: look at the environment variable) and metric switches."""

    paths: Dict[str, Optional[str]] = field(default_factory=dict)
    only: Optional[tuple] = None  # metric keys to compute (None: all)
    device: str = "cpu"
    max_offset: int = 15  # SyncNet offsets searched, in frames (±)
    protocol: str = "native"  # 'eat': EAT's inputs for every metric; 'native': full frames

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")

    def path(self, name: str) -> Optional[Path]:
        """The configured file for weight source `name`: flag value, else env var, else None."""
        source = WEIGHT_SOURCES[name]
        value = self.paths.get(name) or os.environ.get(source.env)
        return Path(value).expanduser() if value else None

    def require(self, name: str) -> Path:
        """The configured file, or MetricUnavailable saying which flag/variable and what file."""
        source = WEIGHT_SOURCES[name]
        path = self.path(name)
        if path is None:
            raise MetricUnavailable(f"no weights: pass {source.flag} or set {source.env} ({source.what})")
        if not path.exists():
            raise MetricUnavailable(f"{source.flag}/{source.env} points to a missing file: {path}")
        return path

    def wants(self, *keys: str) -> bool:
        return self.only is None or any(k in self.only for k in keys)


def load_user_network(path: Path, what: str, device="cpu"):
    """A user-supplied network: a torch.export program (.pt2) or a TorchScript file."""
    import warnings

    import torch

    try:
        if Path(path).suffix == ".pt2":
            return torch.export.load(str(path)).module().to(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still the common format
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:
        raise MetricUnavailable(f"cannot load the {what} {path}: {str(exc).strip().splitlines()[0]}") from None
