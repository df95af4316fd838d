"""Inference benchmark: our batched, cached generation vs the official per-frame call pattern.

The reference path reproduces how the published demos call the generator: one frame at a time,
the source image re-encoded for every frame, every driver frame encoded, and the EEM's discarded
first branch computed. Both paths use the same weights and inputs in the same process; outputs
are compared within the parity tolerance. Audio2Lip (a few MFLOP per frame, identical in both
paths) is left out: mouth weights are given as the audio path would give them.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model import EDTalk
from ..nn.layers import reference_ops
from .drivers import DriverPlan, plan_drivers
from .pipeline import EDTalkPipeline
from .specs import Weights


def machine() -> str:
    """The CPU's model name and core count, for the header of every benchmark table."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        name = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


@dataclass
class Scenario:
    name: str
    description: str
    variant: str  # 'edtalk' or 'lip_pose'
    lip: str  # 'audio' or 'video'
    pose: str  # 'video' or 'fixed'
    exp: str  # 'preset', 'video' or 'none'
    one_video: bool = False  # the same video drives every video-driven factor (reenactment)


SCENARIOS = [
    Scenario("A-preset", "audio lips, pose video, preset expression", "edtalk", "audio", "video", "preset"),
    Scenario("A-preset-fixed", "audio lips, fixed pose, preset expression", "edtalk", "audio", "fixed", "preset"),
    Scenario("A-expvideo", "audio lips, pose video, expression video", "edtalk", "audio", "video", "video"),
    Scenario("V", "lip, pose and expression videos", "edtalk", "video", "video", "video"),
    Scenario("V-one-video", "one video drives lip, pose and expression", "edtalk", "video", "video", "video",
             one_video=True),
    Scenario("lip-pose-A", "lip-pose model, audio lips, pose video", "lip_pose", "audio", "video", "none"),
    Scenario("lip-pose-V", "lip-pose model, lip and pose videos", "lip_pose", "video", "video", "none"),
]


def synthetic_inputs(frames: int, size: int = 256, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Smooth random images in [-1,1] (low-frequency noise upsampled) and random weights."""
    g = torch.Generator().manual_seed(seed)

    def images(n):
        low = torch.rand(n, 3, size // 16, size // 16, generator=g) * 2 - 1
        return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    return {
        "source": images(1), "lip": images(frames), "pose": images(frames), "exp": images(frames),
        "mouth": torch.randn(frames, 20, generator=g), "preset": torch.randn(1, 10, generator=g) * 2,
    }


def scenario_plan(model: EDTalk, sc: Scenario, inp: Dict[str, torch.Tensor]) -> DriverPlan:
    """The same per-frame driver plan `edtalk generate` makes for these inputs."""
    return plan_drivers(sc.lip, inp["mouth"].shape[0],
                        pose_frames=inp["pose"].shape[0] if sc.pose == "video" else None,
                        exp_frames=inp["exp"].shape[0] if sc.exp == "video" else None,
                        lip_pose_model=not model.has_expression)


def scenario_inputs(sc: Scenario, frames: int, size: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    inp = synthetic_inputs(frames, size, seed)
    if sc.one_video:
        inp["pose"] = inp["exp"] = inp["lip"]
    return inp


@torch.inference_mode()
def reference_path(model: EDTalk, sc: Scenario, inp: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The official call pattern: per frame, re-encode the source and all drivers; dead EEM branch on;
    layers computed as written in the spec (weights modulated per sample, separate bias/activation/gain)."""
    with reference_ops():
        return _reference_frames(model, sc, inp)


def _reference_frames(model, sc, inp):
    plan = scenario_plan(model, sc, inp)
    outs = []
    for i in range(len(plan)):
        latent, feats = model.encode(inp["source"])
        m = int(plan.lip[i])
        mouth = inp["mouth"][m:m + 1]
        if sc.lip == "video":
            mouth = model.motion_weights(inp["lip"][m:m + 1])["mouth"]
        if plan.pose is None:
            pose_latent = latent
        else:
            p = int(plan.pose[i])
            pose_latent = model.encode(inp["pose"][p:p + 1])[0]
        pose = model.motion_weights(latent=pose_latent, parts=("pose",))["pose"]
        exp = None
        if sc.exp == "preset":
            exp = inp["preset"]
        elif plan.exp is not None:
            e = int(plan.exp[i])
            exp = model.motion_weights(inp["exp"][e:e + 1])["exp"]
        z, d_exp = model.motion_latent(latent, mouth, pose, exp)
        outs.append(model.dec(z, feats, d_exp, compute_dead_branch=True))
    return torch.cat(outs)


def our_path(model: EDTalk, sc: Scenario, inp: Dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """What `edtalk generate` runs: an EDTalkPipeline call (source once, each driver video once — one
    video driving several factors is encoded once — the same driver plan, batched rendering); the
    model's own frames, before pixels and the MP4."""
    pipe = EDTalkPipeline(generator=model, batch_size=batch_size)
    exp = {"video": inp["exp"], "preset": Weights(inp["preset"]), "none": None}[sc.exp]
    result = pipe(source=inp["source"], lip=inp["lip"] if sc.lip == "video" else Weights(inp["mouth"]),
                  pose=inp["pose"] if sc.pose == "video" else None, exp=exp, crop=False, output_type="pt")
    return result.frames


def count_gflop(fn: Callable[[], torch.Tensor]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def time_call(fn: Callable[[], object], repeats: int = 1, warmup: bool = True) -> float:
    """Best wall-clock seconds of `repeats` calls of fn (scripts/bench.py times every suite with it)."""
    if warmup:
        fn()  # allocator, oneDNN primitive caches, cuDNN autotuning, lazily loaded models
    best = float("inf")
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()  # GPU kernels run asynchronously: stop the clock when they have finished
        best = min(best, time.perf_counter() - start)
    return best


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def run_benchmark(models: Dict[str, EDTalk], frames: int = 8, batch_size: int = 8, repeats: int = 1,
                  scenarios: Optional[List[str]] = None, log=print) -> List[dict]:
    rows = []
    for sc in SCENARIOS:
        if scenarios and sc.name not in scenarios:
            continue
        model = models[sc.variant]
        size = model.config.size
        inp = {k: v.to(model.device, model.dtype) for k, v in scenario_inputs(sc, frames, size).items()}
        ref = reference_path(model, sc, inp)
        ours = our_path(model, sc, inp, batch_size)
        diff = (ours.float() - ref.float()).abs()
        gf_ref = count_gflop(lambda: reference_path(model, sc, {**inp, "mouth": inp["mouth"][:1]}))
        gf_ours = count_gflop(lambda: our_path(model, sc, inp, batch_size)) / frames
        t_ref = time_call(lambda: reference_path(model, sc, inp), repeats) / frames
        t_ours = time_call(lambda: our_path(model, sc, inp, batch_size), repeats) / frames
        row = dict(mode=sc.name, description=sc.description, ref_ms=1e3 * t_ref, ours_ms=1e3 * t_ours,
                   speedup=t_ref / t_ours, ref_gflop=gf_ref, ours_gflop=gf_ours,
                   max_diff=diff.max().item(), mean_diff=diff.mean().item())
        rows.append(row)
        log(format_row(row))
    return rows


HEADER = "| mode | drivers | reference ms/frame | ours ms/frame | speed-up | reference GFLOP/frame | ours GFLOP/frame | max abs diff |"


def format_row(r: dict) -> str:
    return (f"| {r['mode']} | {r['description']} | {r['ref_ms']:.0f} | {r['ours_ms']:.0f} | {r['speedup']:.2f}x | "
            f"{r['ref_gflop']:.1f} | {r['ours_gflop']:.1f} | {r['max_diff']:.1e} |")
