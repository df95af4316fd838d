"""The one training loop, shared by every stage (`edtalk.train.stage`).

Distributed: one process per device, started by `torchrun` (or `torch.multiprocessing.spawn`,
which sets the same environment variables); gloo on CPU, NCCL on GPU.  After every backward the
gradients of the optimiser being stepped are averaged over ranks with `all_reduce` (one flat
buffer per step).  This is the synchronisation `DistributedDataParallel` performs, done
explicitly because a stage calls its models through several methods per step (encode, navigate,
render), alternates G and D updates with requires_grad toggles and freezes parameters — all of
which the DDP wrapper only supports through its `forward` and `find_unused_parameters`.
Parameters start identical (rank 0's are broadcast) and every rank applies the same averaged
gradients, so they stay identical; a test checks it.

Data: :class:`ExactSampler` gives global step s the items perm_e[(s mod n)·G : (s mod n + 1)·G]
of the epoch's seeded permutation (G = global batch, n = steps per epoch, incomplete batches
dropped); rank r takes the r-th of the world-size equal slices.  A step's items depend only on
(seed, step), so resuming at step s needs no sampler state beyond s.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import EDTalkError
from ..runtime import resolve_device
from .config import save_config, to_container
from .stage import Stage, get_stage

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_RE = re.compile(r"^step_(\d{8})\.pt$")


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, info: DistInfo) -> torch.device:
    # auto: CUDA or the CPU (training does not pick MPS by itself); a bare cuda is the rank's GPU.
    device = resolve_device(name, local_rank=info.local_rank, auto_mps=False, option="train.device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def average_gradients(params: List[nn.Parameter], world_size: int) -> None:
    """Replace every gradient by its mean over ranks (missing gradients count as zeros)."""
    if world_size <= 1 or not params:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def weights_digest(models: Dict[str, nn.Module]) -> str:
    """SHA-1 of every parameter and buffer's bytes (bit-identical weights ⇔ equal digests)."""
    import hashlib

    h = hashlib.sha1()
    for name in sorted(models):
        for key, t in models[name].state_dict().items():
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_ranks_in_sync(models: Dict[str, nn.Module], step: int) -> None:
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, weights_digest(models))
    if len(set(digests)) != 1:
        raise EDTalkError(f"ranks hold different weights at step {step}: {digests}")


def broadcast_module(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


# ----------------------------------------------------------------------------- data


class ExactSampler:
    """Which dataset items global step `step` gives to `rank` (see the module doc)."""

    def __init__(self, num_items: int, global_batch: int, world_size: int, rank: int, seed: int):
        if global_batch % world_size:
            raise EDTalkError(f"train.batch_size ({global_batch}) must be divisible by the number of processes ({world_size})")
        if num_items < global_batch:
            raise EDTalkError(f"the dataset has {num_items} items, fewer than one batch (train.batch_size={global_batch})")
        self.num_items, self.global_batch = num_items, global_batch
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = num_items // global_batch
        self._perm: Optional[tuple] = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_items))
        return self._perm[1]

    def indices(self, step: int, rank: Optional[int] = None) -> List[int]:
        rank = self.rank if rank is None else rank
        perm = self.permutation(self.epoch_of(step))
        start = (step % self.steps_per_epoch) * self.global_batch + rank * self.local_batch
        return [int(i) for i in perm[start:start + self.local_batch]]


class EpochItem(torch.utils.data.Dataset):
    """A dataset indexed by (epoch, index): the item is `dataset[index]` in `epoch`.

    The epoch travels with the index, so one DataLoader (and its worker processes) serves the
    whole run; a worker's copy of the dataset cannot miss a `set_epoch` of the main process.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class StepBatches:
    """Batch sampler of (epoch, index) lists for the steps from `start` on (see ExactSampler)."""

    def __init__(self, sampler: "ExactSampler", start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self):
        step = self.start
        while True:
            epoch = self.sampler.epoch_of(step)
            yield [(epoch, i) for i in self.sampler.indices(step)]
            step += 1


def loader_workers(value, world_size: int = 1) -> int:
    """`data.num_workers`: a number, or auto = one to four loader processes per training process,
    about half of this machine's cores over the processes (the other half computes)."""
    if str(value) != "auto":
        workers = int(value)
        if workers < 0:
            raise EDTalkError(f"data.num_workers must be auto or >= 0, got {value}")
        return workers
    return max(1, min(4, (os.cpu_count() or 2) // (2 * max(1, world_size))))


def use_channels_last(value, device: torch.device) -> bool:
    """`train.channels_last`: auto = on the CPU (oneDNN's convolutions run about 2x faster on
    NHWC than on NCHW tensors at these sizes; same numbers), off elsewhere until measured."""
    if str(value) == "auto":
        return device.type == "cpu"
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise EDTalkError(f"train.channels_last must be auto, true or false, got {value!r}")


def to_channels_last(module: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer of `module` in channels-last layout (in place; names,
    values and state-dict loading are unchanged, and exports are made contiguous)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last):
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return module


def map_tensors(batch, fn):
    """`fn` applied to every tensor of a (nested dict/list/tuple) batch."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_tensors(v, fn) for v in batch)
    return batch


def images_channels_last(batch):
    """4-D float tensors of a batch (images) in channels-last layout."""
    return map_tensors(batch, lambda t: t.contiguous(memory_format=torch.channels_last)
                       if t.dim() == 4 and t.is_floating_point() else t)


def to_device(batch, device: torch.device):
    return map_tensors(batch, lambda t: t.to(device, non_blocking=True))


def import_object(spec: str):
    """'package.module:Name' → the object."""
    import importlib

    module, _, name = spec.partition(":")
    if not name:
        raise EDTalkError(f"expected 'module:Name', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise EDTalkError(f"cannot import {spec}: {exc}") from None


# ----------------------------------------------------------------------------- RNG


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": np_state[0], "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached": float(np_state[4]), "state": torch.from_numpy(np_state[1].astype(np.int64))},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor_fn(train_cfg):
    """LR multiplier per optimiser step: linear warm-up over `warmup_steps`, then `lr_schedule`
    = constant (the spec's stages) or cosine (1 → `lr_min_ratio` at `max_steps`; §8.5's pose flow)."""
    warmup, total = int(train_cfg.warmup_steps), int(train_cfg.max_steps)
    schedule = str(train_cfg.get("lr_schedule", "constant"))
    floor = float(train_cfg.get("lr_min_ratio", 0.0))
    if schedule not in ("constant", "cosine"):
        raise EDTalkError(f"train.lr_schedule must be constant or cosine, got {schedule!r}")

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def adam_implementation(name: str, device: torch.device) -> dict:
    """Adam's keyword for `train.optimizer_impl`: fused (one kernel for all parameters; CPU and
    CUDA), foreach (one kernel per op on CUDA, a loop on the CPU) or loop (the per-parameter
    reference).  auto = fused where this torch has it for the device, else foreach."""
    if name == "auto":
        name = "fused" if device.type in ("cpu", "cuda") else "foreach"
    if name == "fused":
        return {"fused": True}
    if name == "foreach":
        return {"foreach": True}
    if name == "loop":
        return {"foreach": False}
    raise EDTalkError(f"train.optimizer_impl must be auto, fused, foreach or loop, got {name!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- checkpoints


def atomic_torch_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def list_checkpoints(run_dir) -> List[Path]:
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EDTalkError(f"checkpoint not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EDTalkError(f"cannot read training checkpoint {path}: {str(exc).strip().splitlines()[0]}") from None


# ----------------------------------------------------------------------------- logs


class LogAccumulator:
    """Sums each step's logged values where they are (one stacked add per step, no host sync)
    and brings them to the host once per read: a `float()` per value per step stalled a GPU
    step once for every value.  Means are per key over the steps that logged it."""

    def __init__(self):
        self._sums: Dict[tuple, list] = {}  # keys → [device sum vector, steps]
        self._host: Dict[str, list] = {}    # Python numbers → [sum, steps]

    def add(self, logs: Dict[str, object]) -> None:
        keys, values = [], []
        for k, v in logs.items():
            if isinstance(v, torch.Tensor):
                keys.append(k)
                values.append(v if v.dtype == torch.float32 else v.float())
            else:
                entry = self._host.setdefault(k, [0.0, 0])
                entry[0] += float(v)
                entry[1] += 1
        if not keys:
            return
        vector = torch.stack([v.detach().reshape(()) for v in values])
        entry = self._sums.get(tuple(keys))
        if entry is None:
            self._sums[tuple(keys)] = [vector, 1]
        else:
            entry[0] = entry[0] + vector
            entry[1] += 1

    def means(self) -> Dict[str, float]:
        """The per-key means since the last read (one device-to-host copy per key set); resets."""
        totals = {k: list(v) for k, v in self._host.items()}
        for keys, (vector, steps) in self._sums.items():
            for k, value in zip(keys, vector.tolist()):
                entry = totals.setdefault(k, [0.0, 0])
                entry[0] += value
                entry[1] += steps
        self._sums, self._host = {}, {}
        return {k: total / n for k, (total, n) in totals.items()}


# ----------------------------------------------------------------------------- step context


class StepContext:
    """What a stage's `train_step` uses: models, autocast, and `optimize(name, loss)`."""

    def __init__(self, trainer: "Trainer"):
        self._t = trainer
        self.step = 0

    @property
    def models(self) -> Dict[str, nn.Module]:
        return self._t.models

    @property
    def device(self) -> torch.device:
        return self._t.device

    @property
    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return self._t.optimizers

    @property
    def world_size(self) -> int:
        return self._t.dist.world_size

    def ema_model(self, name: str) -> nn.Module:
        return self._t.ema.get(name, self._t.models[name])

    def autocast(self):
        t = self._t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(t.device.type, dtype=t.amp_dtype)

    def set_requires_grad(self, name: str, flag: bool) -> None:
        """Toggle a model's trainable parameters (frozen ones stay frozen)."""
        for p in self._t.trainable_params[name]:
            p.requires_grad_(flag)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Backward, average gradients over ranks, unscale, clip, step, zero; EMA update."""
        t = self._t
        opt, scaler = t.optimizers[name], t.scalers[name]
        params = [p for g in opt.param_groups for p in g["params"]]
        scaler.scale(loss).backward()
        average_gradients(params, t.dist.world_size)
        clip = float(t.cfg.train.grad_clip)
        if clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        t.schedulers[name].step()
        for model_name in t.optimizer_models[name]:
            if model_name in t.ema:
                t.update_ema(model_name)


# ----------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    exports: List[str] = field(default_factory=list)
    last_logs: Dict[str, float] = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        device_type = "cuda" if str(cfg.train.device).startswith("cuda") or (
            cfg.train.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = init_distributed(device_type)
        self.device = pick_device(str(cfg.train.device), self.dist)
        if int(cfg.train.threads) > 0:
            torch.set_num_threads(int(cfg.train.threads))
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.amp_dtype = None
        if cfg.train.amp != "none" and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
        self.run_dir = Path(cfg.run.dir)
        seed_everything(int(cfg.seed))  # same on every rank: identical initial weights
        self.stage: Stage = get_stage(cfg.stage)(cfg, self.device, self.dist.rank, self.dist.world_size)
        self.models = {k: m.to(self.device) for k, m in self.stage.build_models().items()}
        self.stage.models = self.models
        self.channels_last = use_channels_last(cfg.train.channels_last, self.device)
        if self.channels_last:
            for module in list(self.models.values()) + [getattr(self.stage, "perceptual", None)]:
                if module is not None:
                    to_channels_last(module)
        self._freeze(list(cfg.train.freeze))
        if self.dist.enabled:
            for m in self.models.values():
                broadcast_module(m)
        self.trainable_params = {k: [p for p in m.parameters() if p.requires_grad] for k, m in self.models.items()}
        self._build_optimizers()
        self.ema, self._ema_pairs = {}, {}
        if float(cfg.train.ema) > 0:
            for name in self.stage.ema_models():
                self.ema[name] = copy.deepcopy(self.models[name]).requires_grad_(False).eval()
        self._compile_models()
        self.dataset = self.stage.build_dataset()
        self.sampler = ExactSampler(len(self.dataset), int(cfg.train.batch_size), self.dist.world_size,
                                    self.dist.rank, int(cfg.seed))
        self.ctx = StepContext(self)
        self.step = 0
        self.writer = None
        self.probe = None

    # -- setup ----------------------------------------------------------------------------------
    def _freeze(self, prefixes: List[str]) -> None:
        for prefix in prefixes:
            model_name, _, sub = str(prefix).partition(".")
            if model_name not in self.models:
                raise EDTalkError(f"train.freeze: no model {model_name!r} (models: {', '.join(self.models)})")
            hits = [p for n, p in self.models[model_name].named_parameters()
                    if not sub or n == sub or n.startswith(sub + ".")]
            if not hits:
                raise EDTalkError(f"train.freeze: {prefix!r} matches no parameter")
            for p in hits:
                p.requires_grad_(False)

    def _compile_models(self) -> None:
        """`train.compile` / `train.cuda_graphs`: compile the stage's networks in place (after the
        EMA copies, which stay eager: they only render samples)."""
        use_graphs = bool(self.cfg.train.cuda_graphs)
        if not (bool(self.cfg.train.compile) or use_graphs):
            return
        if use_graphs and self.device.type != "cuda":
            raise EDTalkError(f"train.cuda_graphs needs a CUDA device (train.device is {self.device})")
        for module in self.stage.compile_targets():
            module.compile(mode="reduce-overhead" if use_graphs else None)

    def _build_optimizers(self) -> None:
        cfg = self.cfg
        self.optimizers, self.schedulers, self.scalers, self.optimizer_models = {}, {}, {}, {}
        for name, model_names in self.stage.trainable().items():
            params = [p for m in model_names for p in self.trainable_params[m]]
            if not params:
                continue
            o = cfg.optim.get(name, {}) or {}
            opt = torch.optim.Adam(params, lr=float(o.get("lr", 1e-3)), betas=tuple(o.get("betas", (0.9, 0.999))),
                                   weight_decay=float(o.get("weight_decay", 0.0)),
                                   **adam_implementation(str(cfg.train.optimizer_impl), self.device))
            self.optimizers[name] = opt
            self.optimizer_models[name] = list(model_names)
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor_fn(cfg.train))
            self.scalers[name] = torch.amp.GradScaler(
                self.device.type, enabled=self.amp_dtype == torch.float16)

    @torch.no_grad()
    def update_ema(self, name: str) -> None:
        """ema ← lerp(ema, live, 1 − decay) for every parameter in one foreach call; buffers copied."""
        pairs = self._ema_pairs.get(name)
        if pairs is None:
            ema, live = self.ema[name], self.models[name]
            pairs = self._ema_pairs[name] = (list(ema.parameters()), list(live.parameters()),
                                             list(ema.buffers()), list(live.buffers()))
        ema_p, live_p, ema_b, live_b = pairs
        torch._foreach_lerp_(ema_p, live_p, 1.0 - float(self.cfg.train.ema))
        if ema_b:
            torch._foreach_copy_(ema_b, live_b)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = rng_state()
        if self.dist.enabled:
            gathered = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        return {
            "step": self.step,
            "stage": self.cfg.stage,
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "ema": {k: m.state_dict() for k, m in self.ema.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "stage_state": self.stage.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "config": to_container(self.cfg),
        }

    def save_checkpoint(self) -> Optional[Path]:
        if self.dist.enabled and self.cfg.train.check_sync:
            check_ranks_in_sync(self.models, self.step)
        state = self.state_dict()  # every rank joins the RNG gather
        if not self.dist.is_main:
            return None
        path = self.run_dir / CHECKPOINT_DIR / f"step_{self.step:08d}.pt"
        atomic_torch_save(state, path)
        for old in list_checkpoints(self.run_dir)[:-int(self.cfg.run.keep_last)]:
            old.unlink(missing_ok=True)
        return path

    def load_state(self, state: dict) -> None:
        if state.get("stage") != self.cfg.stage:
            raise EDTalkError(f"checkpoint is from stage {state.get('stage')!r}, this run is {self.cfg.stage!r}")
        for k, m in self.models.items():
            try:
                m.load_state_dict(state["models"][k])
            except (RuntimeError, KeyError) as exc:
                raise EDTalkError(f"the checkpoint's {k!r} does not match this config's model "
                                  f"(resume with the run's own config.yaml, or run.resume=none): "
                                  f"{str(exc).strip().splitlines()[0]}") from None
        for k, m in self.ema.items():
            if k in state["ema"]:
                m.load_state_dict(state["ema"][k])
        for group in ("optimizers", "schedulers", "scalers"):
            for k, obj in getattr(self, group).items():
                obj.load_state_dict(state[group][k])
        self.stage.load_state(state.get("stage_state", {}))
        rng = state["rng"]
        set_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])
        self.step = int(state["step"])

    def maybe_resume(self) -> Optional[Path]:
        resume = str(self.cfg.run.resume)
        if resume == "none":
            return None
        if resume == "auto":
            found = list_checkpoints(self.run_dir)
            if not found:
                return None
            path = found[-1]
        else:
            path = Path(resume)
        self.load_state(load_checkpoint(path))
        return path

    # -- logging --------------------------------------------------------------------------------
    def _reduce_logs(self, logs: Dict[str, float]) -> Dict[str, float]:
        names = sorted(logs)
        values = torch.tensor([float(logs[k]) for k in names], dtype=torch.float64)
        if self.dist.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.dist.world_size
        return dict(zip(names, values.tolist()))

    def _sample_batch(self):
        n = min(int(self.cfg.run.sample_count), len(self.dataset))
        # Spread over the dataset (neighbouring items are often one speaker's clips).
        items = [self.dataset[int(i)] for i in np.linspace(0, len(self.dataset) - 1, n).round()]
        return to_device(torch.utils.data.default_collate(items), self.device)

    @torch.no_grad()
    def write_samples(self) -> Optional[Path]:
        from torchvision.utils import make_grid, save_image

        columns = self.stage.sample_images(self._sample_fixed, self.ctx)
        if not columns:
            return None
        cols = [c.detach().float().clamp(-1, 1).cpu() for c in columns.values()]
        rows = torch.stack(cols, dim=1).flatten(0, 1)  # row-major: one sample per row
        grid = make_grid((rows + 1) / 2, nrow=len(cols), padding=1)
        self.writer.add_image("samples/" + "|".join(columns), grid, self.step)
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, str(path))
        return path

    # -- loop -----------------------------------------------------------------------------------
    def _batches(self) -> Iterator:
        """The batches of the steps from self.step on, from one DataLoader for the whole run.

        Items are pure functions of (seed, epoch, index), so the worker count changes nothing
        but speed; the loader's own seed comes from a private generator, not the global RNG.
        """
        workers = loader_workers(self.cfg.data.num_workers, self.dist.world_size)
        loader = torch.utils.data.DataLoader(
            EpochItem(self.dataset), batch_sampler=StepBatches(self.sampler, self.step), num_workers=workers,
            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(int(self.cfg.seed)),
            prefetch_factor=4 if workers else None, persistent_workers=False)
        return iter(loader)

    def _deadline(self) -> Optional[float]:
        minutes = float(self.cfg.train.max_minutes)
        return time.monotonic() + 60.0 * minutes if minutes > 0 else None

    def _past(self, deadline: Optional[float]) -> bool:
        """Whether the wall-clock budget is spent; rank 0's clock decides, so every rank stops at one step."""
        if deadline is None:
            return False
        spent = time.monotonic() >= deadline
        if not self.dist.enabled:
            return spent
        flag = torch.tensor([float(spent)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _build_probe(self):
        """The held-out probe of `train.probe_every` (rank 0), or None."""
        every = int(self.cfg.train.probe_every)
        if every <= 0:
            return None
        if "gen" not in self.models:
            raise EDTalkError(f"train.probe_every: stage {self.cfg.stage} trains no generator to probe")
        from ..eval.probes import TrainingProbe

        p = self.cfg.probe
        return TrainingProbe(str(p.root or self.cfg.data.root).split(":")[0], split=str(p.split), every=every,
                             factor_net=p.factor_net, max_clips=int(p.max_clips), frames=p.frames,
                             triples=int(p.triples), cross=bool(p.cross), seed=int(self.cfg.seed),
                             run_dir=self.run_dir)

    def run_probe(self) -> Dict[str, float]:
        """Probe the generator (its EMA when there is one) now: run_dir/probes.jsonl + TensorBoard."""
        values = self.probe(self.ctx.ema_model("gen"), self.step)
        for k, v in values.items():
            if v == v:  # NaN (a ratio over ~0) is left out of TensorBoard; the JSONL keeps null
                self.writer.add_scalar(k, v, self.step)
        return values

    def run_step(self, batch) -> Dict[str, object]:
        """One training step on a batch already on the device; returns the stage's logs."""
        if self.channels_last:
            batch = images_channels_last(batch)
        self.ctx.step = self.step
        logs = self.stage.train_step(batch, self.ctx)
        self.step += 1
        return logs

    def train(self) -> TrainResult:
        cfg, main = self.cfg, self.dist.is_main
        resumed = self.maybe_resume()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
            self._sample_fixed = self._sample_batch()
            if resumed is not None:
                print(f"edtalk: resumed from {resumed} at step {self.step}", flush=True)
            self.probe = self._build_probe()
            if self.probe is not None and self.step == 0:
                self.run_probe()  # the untrained baseline of the curves
        max_steps = int(cfg.train.max_steps)
        bar = None
        if main and cfg.run.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_steps, initial=self.step, desc=f"train {cfg.stage}", unit="step", dynamic_ncols=True)
        log_every, sample_every, ckpt_every = (int(cfg.run.log_every), int(cfg.run.sample_every),
                                               int(cfg.run.checkpoint_every))
        acc = LogAccumulator()
        acc_n, wait_s, busy_s = 0, 0.0, 0.0
        last = {}
        for m in self.models.values():
            m.train()
        batches = self._batches()
        deadline = self._deadline()
        while self.step < max_steps:
            t0 = time.perf_counter()
            batch = to_device(next(batches), self.device)
            t1 = time.perf_counter()
            logs = self.run_step(batch)
            if self._past(deadline):  # the last log, samples, checkpoint and export happen at this step
                max_steps = self.step
                if main:
                    print(f"edtalk: train.max_minutes reached at step {self.step}; rerun to continue", flush=True)
            t2 = time.perf_counter()
            wait_s, busy_s = wait_s + (t1 - t0), busy_s + (t2 - t0)
            acc.add(logs)
            acc_n += 1
            if bar is not None:
                bar.update(1)
            if self.step % log_every == 0 or self.step == max_steps:
                means = self._reduce_logs(acc.means())
                means["time/data_wait_frac"] = wait_s / max(busy_s, 1e-9)
                means["time/step_s"] = busy_s / acc_n
                last = means
                if main:
                    for k, v in means.items():
                        self.writer.add_scalar(k if "/" in k else f"loss/{k}", v, self.step)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]}, refresh=False)
                acc_n, wait_s, busy_s = 0, 0.0, 0.0
            if main and ((sample_every and self.step % sample_every == 0) or self.step == max_steps):
                self.write_samples()
            if main and self.probe is not None and (self.probe.due(self.step) or self.step == max_steps):
                self.run_probe()
            if (ckpt_every and self.step % ckpt_every == 0) or self.step == max_steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        self.ctx.step = self.step
        exports: List[str] = []
        if main:
            if cfg.run.export:
                exports = [str(p) for p in self.stage.export(self.run_dir / "export", self.ctx)]
            self.writer.flush()
            self.writer.close()
        if self.dist.enabled:
            dist.barrier()
        return TrainResult(self.run_dir, self.step, exports, last)


def train(cfg) -> TrainResult:
    """Run (or resume) the training run described by `cfg` (from `load_train_config`)."""
    trainer = Trainer(cfg)
    try:
        return trainer.train()
    finally:
        if dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.destroy_process_group()
