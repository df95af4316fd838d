"""The Stage API: what one training stage supplies to the one trainer (`edtalk.train.trainer`).

The trainer owns everything that is the same for every stage: the distributed setup (one process
per device, gradients averaged over ranks after every backward), the exact resumable sampler,
AMP (autocast + GradScaler), gradient clipping, EMA, checkpoints (atomic, keep last N, models +
optimisers + schedulers + scalers + step + RNG states), TensorBoard scalars and sample grids, the
progress bar and the exports.  A stage supplies only what differs: its models, its data and one
training step.  Stages are registered by name and picked with `stage: <name>` in the YAML config.

Writing a stage::

    from edtalk.train.stage import Stage, register_stage

    @register_stage("my_stage")
    class MyStage(Stage):
        # Defaults for this stage's own keys; the YAML file and `key=value` overrides go on top.
        default_config = {"loss": {"my_term": 1.0}}

        def build_models(self):            # every module the stage needs, trained or frozen
            return {"gen": ..., "dis": ...}   # names become checkpoint entries

        def trainable(self):               # optimiser name → modules it updates (see below)
            return {"gen": ["gen"], "dis": ["dis"]}

        def build_dataset(self):           # a map-style Dataset of dict items (tensors);
            return MyDataset(...)          # set_epoch(epoch) is called when it has one

        def train_step(self, batch, ctx):  # batch: this rank's share of the global batch
            with ctx.autocast():
                loss = ...
            ctx.optimize("gen", loss)      # backward, all-reduce, unscale, clip, step, EMA
            return {"loss": loss}          # scalars to log (tensors or floats)

        def sample_images(self, batch, ctx):  # optional: columns of the TensorBoard grid
            return {"source": ..., "driver": ..., "output": ...}

        def export(self, out_dir, ctx):    # optional: final artefacts (rank 0 only)
            ...

Rules a stage follows, so that any stage gets exact DDP and exact resume for free:

- Randomness of a data item comes from the item itself (e.g. `numpy.random.default_rng([seed,
  epoch, index])`), never from a global generator: the sampler decides which items a step sees,
  the item decides its content, so a resumed run sees the same bytes.
- Losses are means over this rank's part of the batch (a sum when the spec says so): the trainer
  averages gradients over ranks, which makes a mean over the global batch.
- Parameters that must not learn are frozen in `build_models` (requires_grad False); optimisers
  only see parameters with requires_grad True.  `self.cfg.train.freeze` lists module-name
  prefixes that the trainer freezes for any stage (e.g. `[gen.enc, gen.dec]`).
- Use `ctx.set_requires_grad(name, flag)` to toggle a model for alternating (GAN) updates.
- `ctx.models[name]` is the live module; `ctx.ema_model(name)` the EMA copy (or the live module
  when EMA is off).  Exports and sample grids use the EMA copy.

A stage module under `edtalk/train/stages/` is found by its registered name even when it is not
listed in STAGE_MODULES (all stage modules are imported on a miss).

Training II stages (expression decoupling, SyncNet, audio-to-lip, pose flow, audio/text-to-
expression, person-specific fine-tuning) plug in the same way: a new module under
`edtalk/train/stages/` with one registered class; the trainer does not change.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Type

import torch
from torch import nn

from ..errors import EDTalkError

__all__ = ["Stage", "register_stage", "get_stage", "available_stages", "STAGE_MODULES"]

_REGISTRY: Dict[str, Type["Stage"]] = {}

# Where the built-in stages live; imported on first use so `edtalk train` stays fast to start and
# a stage from another helper's module is found by name alone.
STAGE_MODULES = {
    "stage0": "edtalk.train.stages.stage0",
    "stage1": "edtalk.train.stages.stage1",
    "synthtalk_factor_net": "edtalk.train.stages.factor_net",
}


def register_stage(name: str) -> Callable[[Type["Stage"]], Type["Stage"]]:
    """Class decorator: make a Stage subclass available as `stage: <name>`."""

    def decorate(cls: Type["Stage"]) -> Type["Stage"]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"stage {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _import_all_stage_modules() -> None:
    import pkgutil

    # Found by path and name, like STAGE_MODULES: the stage modules import this one, not the reverse.
    package = f"{__package__}.stages"
    for info in pkgutil.iter_modules([os.path.join(os.path.dirname(__file__), "stages")]):
        importlib.import_module(f"{package}.{info.name}")


def get_stage(name: str) -> Type["Stage"]:
    """The Stage class registered as `name` (importing its module on first use)."""
    if name not in _REGISTRY and name in STAGE_MODULES:
        try:
            importlib.import_module(STAGE_MODULES[name])
        except ModuleNotFoundError as exc:
            raise EDTalkError(f"stage {name!r} is not available ({exc})") from None
    if name not in _REGISTRY:  # a stage module not listed above registers itself on import
        _import_all_stage_modules()
    if name not in _REGISTRY:
        raise EDTalkError(f"unknown stage {name!r} (available: {', '.join(available_stages())})")
    return _REGISTRY[name]


def available_stages() -> List[str]:
    return sorted(set(_REGISTRY) | set(STAGE_MODULES))


class Stage:
    """One training stage.  Subclasses override the `build_*` methods and `train_step`.

    Attributes set by the trainer before any method is called:
    `cfg` (the resolved OmegaConf config), `device` (torch.device), `rank`, `world_size`.
    """

    name: str = ""
    default_config: Mapping[str, Any] = {}

    def __init__(self, cfg, device: torch.device, rank: int = 0, world_size: int = 1):
        self.cfg = cfg
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.models: Dict[str, nn.Module] = {}

    # -- what every stage provides ------------------------------------------------------------
    def build_models(self) -> Dict[str, nn.Module]:
        """All modules of the stage (trained and frozen), by name; saved in checkpoints."""
        raise NotImplementedError

    def build_dataset(self):
        """A map-style dataset of dict items; `set_epoch(epoch)` is called if it exists."""
        raise NotImplementedError

    def train_step(self, batch: Dict[str, torch.Tensor], ctx) -> Dict[str, Any]:
        """One optimisation step on this rank's batch; returns scalars to log."""
        raise NotImplementedError

    # -- optional hooks -----------------------------------------------------------------------
    def trainable(self) -> Dict[str, List[str]]:
        """Optimiser name → names of the models it updates.  Each optimiser reads its settings
        from `cfg.optim.<name>` (lr, betas, weight_decay).  Default: one optimiser per model."""
        return {name: [name] for name in self.models}

    def ema_models(self) -> List[str]:
        """Models that get an EMA copy when `train.ema` > 0 (default: 'gen' if present)."""
        return [n for n in ("gen",) if n in self.models]

    def sample_images(self, batch: Dict[str, torch.Tensor], ctx) -> Optional[Dict[str, torch.Tensor]]:
        """Columns of the sample grid (images in [-1,1], same batch); None for no grid.
        Called without autograd; use `ctx.ema_model(name)` for the model to show."""
        return None

    def export(self, out_dir, ctx) -> List[str]:
        """Write final artefacts under out_dir (rank 0 only); return the written paths."""
        return []

    def compile_targets(self) -> List[nn.Module]:
        """Modules whose forward `train.compile` / `train.cuda_graphs` hand to torch.compile
        (in place: parameter names and checkpoints do not change).  Default: every direct child
        of every model, and the perceptual backbone if the stage has one."""
        targets = [child for m in self.models.values() for child in m.children()]
        perceptual = getattr(self, "perceptual", None)
        if perceptual is not None:
            targets.append(perceptual.backbone)
        return targets

    def load_state(self, state: Dict[str, Any]) -> None:
        """Restore stage-specific state saved by `state_dict` (default: nothing)."""

    def state_dict(self) -> Dict[str, Any]:
        """Stage-specific state to checkpoint besides models/optimisers (tensors, numbers)."""
        return {}
