"""Model configurations. Every network carries its config, so tiny variants exist for fast tests.

The defaults are the official 256×256 architecture (docs/design.md §2). `tiny()` presets are 64×64 models
with few channels; they exercise every code path in milliseconds.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import yaml

OFFICIAL_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
TINY_CHANNELS = {4: 32, 8: 32, 16: 32, 32: 16, 64: 8}


def _int_keys(d: Dict) -> Dict[int, int]:
    # JSON/YAML turn int keys into strings; restore them.
    return {int(k): int(v) for k, v in d.items()}


class _ConfigMixin:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"model_type"}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path) -> None:
        path = Path(path)
        data = {"model_type": getattr(self, "model_type", type(self).__name__), **self.to_dict()}
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        else:
            path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path):
        path = Path(path)
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        return cls.from_dict(data)


@dataclass
class EDTalkConfig(_ConfigMixin):
    """Architecture of the EDTalk generator (encoder, banks, navigation heads, synthesis).

    `exp_dim = 0` gives the lip-pose model (no expression bank, head or EEM).
    """

    size: int = 256
    latent_dim: int = 512
    channels: Dict[int, int] = field(default_factory=lambda: dict(OFFICIAL_CHANNELS))
    mouth_dim: int = 20
    pose_dim: int = 6
    exp_dim: int = 10
    shared_mlp_depth: int = 4
    adain_hidden: int = 128
    model_type: str = "edtalk"

    def __post_init__(self):
        self.channels = _int_keys(self.channels)
        log_size = math.log2(self.size)
        if self.size < 8 or log_size != int(log_size):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        missing = [r for r in self.resolutions_with_const if r not in self.channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        if self.latent_dim < self.num_bases:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be >= number of bases ({self.num_bases})")

    @property
    def has_expression(self) -> bool:
        return self.exp_dim > 0

    @property
    def num_bases(self) -> int:
        return self.mouth_dim + self.pose_dim + self.exp_dim

    @property
    def resolutions(self):
        """Decoder / feature-map resolutions, coarsest first: 8, 16, ..., size."""
        return [2 ** i for i in range(3, int(math.log2(self.size)) + 1)]

    @property
    def resolutions_with_const(self):
        return [4] + self.resolutions

    @classmethod
    def official(cls) -> "EDTalkConfig":
        return cls()

    @classmethod
    def official_lip_pose(cls) -> "EDTalkConfig":
        return cls(exp_dim=0)

    @classmethod
    def tiny(cls, exp_dim: int = 10) -> "EDTalkConfig":
        return cls(size=64, latent_dim=64, channels=dict(TINY_CHANNELS), exp_dim=exp_dim, adain_hidden=16)


@dataclass
class Audio2LipConfig(_ConfigMixin):
    """Wav2Lip-style audio encoder (13 conv blocks on 80×16 mel windows) + linear head."""

    channels: tuple = (32, 64, 128, 256, 512)
    mouth_dim: int = 20
    model_type: str = "audio2lip"

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 5:
            raise ValueError("Audio2Lip channels must list 5 widths")

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @classmethod
    def official(cls) -> "Audio2LipConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "Audio2LipConfig":
        return cls(channels=(4, 8, 8, 16, 16))


@dataclass
class DiscriminatorConfig(_ConfigMixin):
    size: int = 256
    channels: Dict[int, int] = field(default_factory=lambda: dict(OFFICIAL_CHANNELS))
    stddev_group: int = 4
    model_type: str = "discriminator"

    def __post_init__(self):
        self.channels = _int_keys(self.channels)

    @classmethod
    def tiny(cls) -> "DiscriminatorConfig":
        return cls(size=64, channels=dict(TINY_CHANNELS))


def config_class_for(model_type: str):
    table = {"edtalk": EDTalkConfig, "audio2lip": Audio2LipConfig, "discriminator": DiscriminatorConfig}
    if model_type not in table:
        raise ValueError(f"unknown model_type {model_type!r}")
    return table[model_type]


def load_config(path):
    """Load any model config from JSON/YAML, dispatching on its `model_type`."""
    path = Path(path)
    text = path.read_text()
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    return config_class_for(data.get("model_type", "edtalk")).from_dict(data)


def default_channels_for(size: int, base: Optional[Dict[int, int]] = None) -> Dict[int, int]:
    base = dict(base or OFFICIAL_CHANNELS)
    return {r: base[r] for r in [2 ** i for i in range(2, int(math.log2(size)) + 1)]}


class GeneratorVariant:
    """`has_expression` and `variant` ("edtalk" or "lip_pose") of anything with an EDTalkConfig as
    `self.config`: the torch model and its ONNX runner answer alike."""

    config: EDTalkConfig

    @property
    def has_expression(self) -> bool:
        return self.config.has_expression

    @property
    def variant(self) -> str:
        return "edtalk" if self.has_expression else "lip_pose"
