"""Training configs: OmegaConf YAML + dotted `key=value` overrides, checked against the defaults.

Order (later wins): trainer defaults (:data:`BASE_DEFAULTS`) → the stage's `default_config` →
the YAML file → the command-line overrides.  After the stage defaults the config is *struct*:
a key that no default names (a typo in the file or an override) is an error, reported as one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..errors import EDTalkError

BASE_DEFAULTS = {
    "stage": "???",
    "seed": 0,
    "run": {
        "dir": "runs/default",
        "log_every": 10,          # steps between scalar logs
        "sample_every": 200,      # steps between sample grids (0 = only at the end)
        "sample_count": 4,        # rows of the sample grid
        "checkpoint_every": 500,  # steps between checkpoints (0 = only at the end)
        "keep_last": 3,           # checkpoints kept in run.dir/checkpoints
        "resume": "auto",         # auto (latest in run.dir) | none | a checkpoint path
        "progress": True,
        "export": True,           # write the stage's exports at the end
    },
    "data": {
        "root": "???",
        "dataset": None,          # "module:Class" to override the stage's dataset
        "split": "train",
        "length": None,           # items per epoch (None = one per clip; more for tiny trees)
        "size": None,             # frame size; None = the model size
        "num_workers": "auto",    # loader processes per training process: auto (1-4, by cores) | N (0 = in-process)
        "cross_clip_rate": 0.0,   # stage 1: identity frames from another clip of the speaker, at this rate
        "same_frame_rate": 0.0,   # stage 0: source at the target's frame index of a neutral clip, at this rate
        "exp_pair_rate": 0.0,     # stage 2: targets redrawn among the speaker's emotional clips, at this rate
        "max_pose_gap": None,     # stage 2: target pose within this fraction of each pose factor's range
    },
    "train": {
        "max_steps": 1000,
        "max_minutes": 0.0,       # wall-clock budget of this process (0 = none): stop early, checkpoint, export
        "batch_size": 8,          # global batch (split evenly over the processes)
        "device": "auto",         # auto | cpu | cuda | cuda:N
        "amp": "none",            # none | bf16 | fp16 (GPU only)
        "grad_clip": 0.0,         # max gradient norm per optimiser (0 = off)
        "ema": 0.0,               # EMA decay of the generator (0 = off), e.g. 0.999
        "threads": 0,             # torch CPU threads per process (0 = torch default)
        "freeze": [],             # module-name prefixes to freeze, e.g. [gen.enc, gen.dec]
        "warmup_steps": 0,        # linear LR warm-up (0 = constant LR, the spec's setting)
        "lr_schedule": "constant",  # constant | cosine (decay to lr_min_ratio·lr at max_steps)
        "lr_min_ratio": 0.0,
        "deterministic": False,   # torch.use_deterministic_algorithms (bit-exact resume on GPU)
        "check_sync": False,      # at each checkpoint, fail unless every rank holds bit-identical weights
        "optimizer_impl": "auto", # Adam kernels: auto (fused where available) | fused | foreach | loop
        "probe_every": 0,         # held-out disentanglement probes every N steps (0 = off); see probe.*
        "channels_last": "auto",  # NHWC images and conv weights: auto (on for the CPU) | true | false
        "compile": False,         # torch.compile the stage's networks (minutes of compiling on a CPU)
        "cuda_graphs": False,     # CUDA only: compile with CUDA graphs (mode reduce-overhead); see docs/performance.md
    },
    "optim": {},
    "probe": {                    # edtalk.eval.probes.TrainingProbe (generator stages on SynthTalk trees)
        "root": None,             # the tree to probe (None = data.root)
        "split": "test",          # held-out speakers
        "max_clips": 24,
        "frames": 32,
        "triples": 24,            # cross-driving (identity, lip, pose) speaker triples
        "cross": True,
        "factor_net": None,       # the frame reader (None = checkpoints/synthtalk_factor_net)
    },
}


def _omegaconf():
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - listed in requirements.txt
        raise EDTalkError("training needs omegaconf: pip install omegaconf") from None
    return OmegaConf


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_train_config(path: Optional[str], overrides: Sequence[str] = (), stage: Optional[str] = None):
    """The resolved config of a run (an OmegaConf DictConfig); EDTalkError on any mistake."""
    OmegaConf = _omegaconf()
    from omegaconf.errors import OmegaConfBaseException

    from .stage import get_stage

    try:
        file_cfg = OmegaConf.create({})
        if path is not None:
            if not Path(path).is_file():
                raise EDTalkError(f"config file not found: {path}")
            file_cfg = OmegaConf.load(path)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise EDTalkError(f"override {bad[0]!r} is not key=value")
        cli_cfg = OmegaConf.from_dotlist(list(overrides))
        name = stage or cli_cfg.get("stage") or file_cfg.get("stage")
        if not name:
            raise EDTalkError("the config names no stage (set `stage: stage0|stage1|...`)")
        stage_cls = get_stage(str(name))
        cfg = OmegaConf.merge(OmegaConf.create(BASE_DEFAULTS), OmegaConf.create(dict(stage_cls.default_config)))
        OmegaConf.set_struct(cfg, True)
        cfg = OmegaConf.merge(cfg, file_cfg, cli_cfg)
        cfg.stage = str(name)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise EDTalkError(f"config value {missing[0]} is required (set it in the file or as {missing[0]}=...)")
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise EDTalkError(f"bad training config: {_one_line(exc)}") from None
    except (OSError, ValueError) as exc:  # yaml errors are ValueErrors
        raise EDTalkError(f"cannot read config {path}: {_one_line(exc)}") from None
    check_common(cfg)
    return cfg


def check_common(cfg) -> None:
    """Range checks on the keys every stage shares."""
    t = cfg.train
    if int(t.max_steps) < 1:
        raise EDTalkError("train.max_steps must be at least 1")
    if float(t.max_minutes) < 0:
        raise EDTalkError("train.max_minutes must be 0 (no limit) or positive")
    if int(t.batch_size) < 1:
        raise EDTalkError("train.batch_size must be at least 1")
    if t.amp not in ("none", "bf16", "fp16"):
        raise EDTalkError(f"train.amp must be none, bf16 or fp16, got {t.amp!r}")
    if not 0.0 <= float(t.ema) < 1.0:
        raise EDTalkError("train.ema must be in [0, 1)")
    if int(cfg.run.keep_last) < 1:
        raise EDTalkError("run.keep_last must be at least 1")


def to_container(cfg) -> dict:
    return _omegaconf().to_container(cfg, resolve=True)


def save_config(cfg, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(_omegaconf().to_yaml(cfg))
    tmp.replace(path)
